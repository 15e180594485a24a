"""The bgm runtime: everything a compiled model imports (torch only, never dsl or compiler)."""
