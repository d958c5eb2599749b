-- Cancellation policies and session outcomes.

-- A session type's cancellation policy, versioned: changing its text, window or fees adds a row
-- with the next version, and a booking keeps the version it was booked under (bookings.policy_id).
-- Fees are information for billing (an amount and an ISO 4217 code); nothing is charged here.
CREATE TABLE cancellation_policies (
    id                   uuid PRIMARY KEY,
    session_type_id      uuid NOT NULL REFERENCES session_types (id) ON DELETE CASCADE,
    version              integer NOT NULL CHECK (version >= 1),
    window_hours         integer NOT NULL CHECK (window_hours BETWEEN 0 AND 720),
    text                 text NOT NULL CHECK (length(text) <= 4000),
    late_cancel_amount   numeric CHECK (late_cancel_amount >= 0 AND late_cancel_amount < 100000000
                                        AND scale(late_cancel_amount) <= 3),
    late_cancel_currency text CHECK (late_cancel_currency ~ '^[A-Z]{3}$'),
    no_show_amount       numeric CHECK (no_show_amount >= 0 AND no_show_amount < 100000000
                                        AND scale(no_show_amount) <= 3),
    no_show_currency     text CHECK (no_show_currency ~ '^[A-Z]{3}$'),
    created_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT cancellation_policies_version_key UNIQUE (session_type_id, version),
    CONSTRAINT cancellation_policies_late_fee_whole CHECK ((late_cancel_amount IS NULL) = (late_cancel_currency IS NULL)),
    CONSTRAINT cancellation_policies_no_show_fee_whole CHECK ((no_show_amount IS NULL) = (no_show_currency IS NULL))
);

-- The policy a booking was made under. Set at insert by the trigger below from the session type's
-- latest version, whichever code path inserts (a single booking, a series occurrence), so no
-- booking can be made without it; later versions never change it (a reschedule keeps it).
ALTER TABLE bookings ADD COLUMN policy_id uuid REFERENCES cancellation_policies (id);

CREATE FUNCTION bookings_policy_at_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.policy_id IS NULL THEN
        SELECT id INTO NEW.policy_id FROM cancellation_policies
        WHERE session_type_id = NEW.session_type_id ORDER BY version DESC LIMIT 1;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER bookings_policy_at_insert BEFORE INSERT ON bookings
    FOR EACH ROW EXECUTE FUNCTION bookings_policy_at_insert();

-- A booking's statuses: a client's cancellation inside the window is late_cancelled; after the
-- start the therapist (or the attendance record) says attended or no_show. Only confirmed
-- bookings take part in the exclusion constraint, as before.
ALTER TABLE bookings DROP CONSTRAINT bookings_status_check;
ALTER TABLE bookings ADD CONSTRAINT bookings_status_check
    CHECK (status IN ('confirmed', 'cancelled', 'late_cancelled', 'no_show', 'attended'));

-- The therapist's choices about fees.
CREATE TABLE policy_settings (
    therapist_id                  uuid PRIMARY KEY REFERENCES therapists (id) ON DELETE CASCADE,
    waive_first_late_cancellation boolean NOT NULL DEFAULT false,
    suggest_waiver_when_rebooked  boolean NOT NULL DEFAULT false,
    updated_at                    timestamptz NOT NULL DEFAULT now()
);

-- Whether a late cancellation's or a no-show's fee is charged or waived, and why. The current
-- decision; each decision (and a change of mind) is also an audit event.
CREATE TABLE fee_decisions (
    booking_id uuid PRIMARY KEY REFERENCES bookings (id) ON DELETE CASCADE,
    decision   text NOT NULL CHECK (decision IN ('charge', 'waive')),
    reason     text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    decided_by text NOT NULL CHECK (decided_by IN ('therapist', 'system')),
    decided_at timestamptz NOT NULL DEFAULT now()
);

-- The review list and the billing export read a therapist's bookings by status and time.
CREATE INDEX bookings_therapist_status_start ON bookings (therapist_id, status, starts_at);
