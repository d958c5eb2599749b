-- A session marked attended or no_show still holds its time (and its buffers): the slot query
-- counts it, and now PostgreSQL refuses an overlapping booking too, so the database stays the
-- guarantee for every status that keeps the therapist busy, not only for 'confirmed'.
ALTER TABLE bookings DROP CONSTRAINT bookings_no_overlap;
ALTER TABLE bookings ADD CONSTRAINT bookings_no_overlap
    EXCLUDE USING gist (therapist_id WITH =, blocked WITH &&)
    WHERE (status IN ('confirmed', 'attended', 'no_show'));
