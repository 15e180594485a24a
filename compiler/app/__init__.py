"""The application layer: the one place that imports both the compiler and the runtime.

The compiler turns text into Python source and never imports torch or the runtime; the
runtime runs generated classes and never sees a compiler object. What a user asks for
(compile, bind to data, fit with a method, sample, predict, calibrate) joins the two here:
`program.Program` is the library's entry point, `fitting` holds the fit policy (which
engine a method means for a model, and what the fit reports), `userfiles` reads the files
a user hands back (fits, initial values), `progress` is the one progress reporter, and
`cli` is argparse and printing over them.
"""
