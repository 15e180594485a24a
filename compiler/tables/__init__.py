"""The language's tables: distributions with their parameterisations and supports, built-in
functions, reserved and generated names. Passes, code generation, teaching tools and
the highlighter read them; they read nothing but dsl."""
