-- A session the therapist ended stays ended for the client: a durable fact every node can read.
-- The therapist reopens it by joining again (the row is then removed).
CREATE TABLE room_endings (
    booking_id uuid PRIMARY KEY REFERENCES bookings (id) ON DELETE CASCADE,
    ended_at   timestamptz NOT NULL
);
