"""Pure calendar logic: availability rules to slots, iCal rendering and parsing. No I/O."""
