"""Teleroom's broker: settings, storage, bookings, tokens, auth and the JSON API."""
