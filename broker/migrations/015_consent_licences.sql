-- Safe to start (issue 11): telehealth consent, emergency details, licences and where a client is.
-- Places are ISO 3166 codes (broker/places.py checks them against pycountry's lists; the CHECKs
-- here only hold their shape): a country is ISO 3166-1 alpha-2, a region ISO 3166-2 of that country.

-- A therapist's telehealth consent text, versioned: an edit adds the next version and never changes
-- one a client accepted. A therapist's first version is the shipped default (broker/data), written
-- when it is first needed.
CREATE TABLE consent_texts (
    id           uuid PRIMARY KEY,
    therapist_id uuid NOT NULL REFERENCES therapists (id) ON DELETE CASCADE,
    version      integer NOT NULL CHECK (version >= 1),
    text         text NOT NULL CHECK (length(text) BETWEEN 1 AND 20000),
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT consent_texts_version_key UNIQUE (therapist_id, version),
    CONSTRAINT consent_texts_therapist_id_key UNIQUE (therapist_id, id)
);

-- A client's acceptance of one version: the name they typed and when. Both keys name the therapist,
-- so a consent can only be to the client's own therapist's text.
CREATE TABLE client_consents (
    id              uuid PRIMARY KEY,
    therapist_id    uuid NOT NULL,
    client_id       uuid NOT NULL,
    consent_text_id uuid NOT NULL,
    version         integer NOT NULL CHECK (version >= 1),
    typed_name      text NOT NULL CHECK (length(typed_name) BETWEEN 1 AND 200),
    accepted_at     timestamptz NOT NULL DEFAULT now(),
    -- The booking whose link it was given through (kept if the booking is later removed with its therapist).
    booking_id      uuid,
    CONSTRAINT client_consents_client_fk FOREIGN KEY (therapist_id, client_id)
        REFERENCES clients (therapist_id, id) ON DELETE CASCADE,
    CONSTRAINT client_consents_text_fk FOREIGN KEY (therapist_id, consent_text_id)
        REFERENCES consent_texts (therapist_id, id) ON DELETE CASCADE,
    CONSTRAINT client_consents_once UNIQUE (client_id, consent_text_id)
);

-- Who to call for a client in a crisis, and where the client usually is: one current row per
-- client, replaced when the client gives it again (each change audited).
CREATE TABLE emergency_contacts (
    client_id     uuid PRIMARY KEY,
    therapist_id  uuid NOT NULL,
    contact_name  text NOT NULL CHECK (length(contact_name) BETWEEN 1 AND 200),
    contact_phone text NOT NULL CHECK (length(contact_phone) BETWEEN 3 AND 40),
    usual_country text NOT NULL CHECK (usual_country ~ '^[A-Z]{2}$'),
    usual_region  text CHECK (usual_region ~ '^[A-Z]{2}-[A-Z0-9]{1,3}$' AND left(usual_region, 2) = usual_country),
    usual_note    text CHECK (length(usual_note) <= 500),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT emergency_contacts_client_fk FOREIGN KEY (therapist_id, client_id)
        REFERENCES clients (therapist_id, id) ON DELETE CASCADE
);

-- Where a therapist may practise: a country or a subdivision, with the licence's kind, number and
-- expiry (null: does not expire). Valid for a session on or before its expiry date.
CREATE TABLE licences (
    id           uuid PRIMARY KEY,
    therapist_id uuid NOT NULL REFERENCES therapists (id) ON DELETE CASCADE,
    jurisdiction text NOT NULL CHECK (jurisdiction ~ '^[A-Z]{2}(-[A-Z0-9]{1,3})?$'),
    kind         text NOT NULL CHECK (length(kind) BETWEEN 1 AND 100),
    number       text NOT NULL CHECK (length(number) BETWEEN 1 AND 100),
    expires_on   date,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX licences_therapist ON licences (therapist_id, jurisdiction);

-- What a booking outside the therapist's valid licences gets: a warning, or a refusal.
CREATE TABLE safety_settings (
    therapist_id  uuid PRIMARY KEY REFERENCES therapists (id) ON DELETE CASCADE,
    licence_check text NOT NULL DEFAULT 'warn' CHECK (licence_check IN ('warn', 'refuse')),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Where the client said they were, each time they joined a session's room (the latest is "today").
CREATE TABLE join_locations (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    booking_id   uuid NOT NULL REFERENCES bookings (id) ON DELETE CASCADE,
    country      text NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    region       text CHECK (region ~ '^[A-Z]{2}-[A-Z0-9]{1,3}$' AND left(region, 2) = country),
    note         text CHECK (length(note) <= 100),
    confirmed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX join_locations_booking ON join_locations (booking_id, confirmed_at DESC);

-- A booking's place as codes; the free-text client_location (migration 006) stays, as a note.
ALTER TABLE bookings
    ADD COLUMN client_country text CHECK (client_country ~ '^[A-Z]{2}$'),
    ADD COLUMN client_region text CHECK (client_region ~ '^[A-Z]{2}-[A-Z0-9]{1,3}$'),
    ADD CONSTRAINT bookings_client_region_in_country
        CHECK (client_region IS NULL OR (client_country IS NOT NULL AND left(client_region, 2) = client_country));
