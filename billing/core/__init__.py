"""The pure billing core: plain data in, plain data out; no ORM, no clock, no I/O."""
