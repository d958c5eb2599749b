"""WebRTC signaling over WebSocket: rooms, waiting room, TURN credentials, echo peer."""
