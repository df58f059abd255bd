-- Seats: the guide's last-seat booking as a small real resource. The CHECK on seats_left is
-- what makes overbooking impossible, whatever the code does.
CREATE TABLE seat_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL,
    seats      INTEGER NOT NULL CHECK (seats > 0),
    seats_left INTEGER NOT NULL CONSTRAINT seat_events_no_overbooking
                       CHECK (seats_left >= 0 AND seats_left <= seats),
    created_at INTEGER NOT NULL
);
CREATE TABLE seat_bookings (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   INTEGER NOT NULL REFERENCES seat_events (id),
    user_id    TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX seat_bookings_by_event ON seat_bookings (event_id);
