"""Running a spec: the plan, the driver, the engines (file, directory, jobs on any executor, Ray), packing.

Internal: the public API is what :mod:`unitarium` exports."""
