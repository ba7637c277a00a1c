import fp from "fastify-plugin";
import { schedulerOptions, type ServerConfig } from "../config.js";
import { Serving } from "../core/lifecycle.js";
import { Scheduler } from "../scheduler/scheduler.js";

declare module "fastify" {
  interface FastifyInstance {
    serving: Serving;
  }
}

/** Decorates `serving`; closing the app closes the engine once every in-flight request is answered. */
export const servingPlugin = fp<{ config: ServerConfig }>(
  async (app, { config }) => {
    const serving = new Serving(config.library, (runtime) => new Scheduler(runtime.engine, schedulerOptions(config), app.metrics));
    app.decorate("serving", serving);
    app.metrics.watch(() => {
      const runtime = serving.runtime;
      if (!runtime) return undefined;
      const { library, engine } = runtime;
      const { state } = library;
      const resident = engine.residencyNow;
      return {
        adapters: state.adapters.size,
        fusions: state.fusions.size,
        routes: state.routes.size,
        queueDepth: serving.queueDepth,
        routeVersions: [...state.routes.values()].map((r) => [r.name, r.version] as const),
        inSync: library.sync.inSync,
        residentRoutes: resident.routes,
        memory: { backbone: engine.backboneBytes, modules: library.moduleBytes, routeLayouts: resident.bytes, directFeeds: resident.directBytes },
      };
    });
    app.addHook("preClose", async () => serving.stop());
    // Keep-alive connections would hold the closing server open until they time out, and keep
    // sending here once a load balancer has moved on: answers given from the moment shutdown
    // begins tell the client to close the connection, so its next one goes elsewhere.
    app.addHook("onSend", async (_request, reply) => {
      if (serving.phase === "draining" || serving.phase === "stopping") reply.header("connection", "close");
    });
    app.addHook("onClose", async () => serving.close());
  },
  { name: "serving", dependencies: ["metrics"] },
);
