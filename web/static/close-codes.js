// WebSocket close codes on /ws, by name. `CloseCode` mirrors signaling/protocol.py's CloseCode
// member for member (tests/test_static_contracts.py holds them equal); docs/signaling.md explains
// each one.

export const CloseCode = Object.freeze({
  GOING_AWAY: 1001,
  MALFORMED: 4400,
  TOKEN_REJECTED: 4401,
  REMOVED: 4403,
  JOIN_TIMEOUT: 4408,
  REPLACED: 4409,
  ROOM_ENDED: 4410,
  TOO_LARGE: 4413,
  BINARY_FRAME: 4415,
  UNKNOWN_TYPE: 4422,
  JOIN_REQUIRED: 4428,
  RATE_LIMITED: 4429,
  SLOW_CONSUMER: 4503,
});

// RFC 6455 section 7.4.1: the browser's own close when it leaves; the server never sends it.
export const NORMAL_CLOSURE = 1000;
