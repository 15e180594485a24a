"""The compiler's passes over the graphical model, in pipeline order (compiler/pipeline.py):
resolve, shapes, nets, flows, checks, loops, supports, folding, elimination; and
conjugacy and guide checks. Each reads the IR (compiler/ir.py) and adds its declared
result fields; none imports torch or the runtime."""
