-- Where the client said, when booking, they will be during sessions (state or country): the
-- therapist may only see clients where they are licensed. Confirmed again at every join.
ALTER TABLE bookings ADD COLUMN client_location text CHECK (length(client_location) <= 100);
