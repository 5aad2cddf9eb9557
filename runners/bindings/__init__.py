"""The bindings library shared by the synthesis runner: Mochi types, the closed type table,
the stub model, and the emitters of shim, sidecar and C wrapper. Pure functions over data:
no I/O beyond reading the stub tree it is pointed at."""
