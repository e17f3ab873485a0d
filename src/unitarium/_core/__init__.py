"""Pure math and circuit formats: gates, gate sets, kernels, canonical forms and keys, the record codec,
circuits and their Qiskit/Cirq/OpenQASM forms (optional libraries imported lazily). No dataset I/O.

Internal: the public API is what :mod:`unitarium` exports."""
