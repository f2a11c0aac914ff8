"""ShadowShift's contracts: the types and definitions every layer shares.

Everything that crosses a process or layer boundary lives here: the protection spec and its
policy, workflow inputs, results and state, the payloads of signals, updates and queries,
activity inputs and outputs, and the *definitions* (name and signature) of every activity
and message handler. Workflows call activities and clients send messages through these
definitions, by reference, so a rename or a payload change is a type error, not a runtime
surprise.

Rule (checked by import-linter and by ``tests/test_contracts.py``): modules here import only
the standard library and ``temporalio`` — no numpy, LightGBM, pandas, boto3, Pulumi or
psycopg — so the CLI, the workflow sandbox and an operator's laptop import them in
milliseconds.
"""
