import { createHash, timingSafeEqual } from "node:crypto";

/** The token of an `Authorization: Bearer <token>` header; the scheme name is case-insensitive (RFC 7235). */
export function bearerToken(header: string | undefined): string | undefined {
  return /^bearer +(.+)$/i.exec(header ?? "")?.[1];
}

/**
 * Whether a header carries `secret`, compared in constant time as digests, so that neither the
 * secret's length nor a matching prefix shows in the timing.
 */
export function bearerMatcher(secret: string): (header: string | undefined) => boolean {
  const expected = digest(secret);
  return (header) => {
    const token = bearerToken(header);
    return token !== undefined && timingSafeEqual(digest(token), expected);
  };
}

export function digest(token: string): Buffer {
  return createHash("sha256").update(token).digest();
}
