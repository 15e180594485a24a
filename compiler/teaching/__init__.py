"""What bgm shows a student about a model without running it: the factorised joint and
conjugate posteriors (explain), the plate diagram and its rendering (diagram, render),
d-separation and Markov blankets (dsep), syntax highlighting (highlight). No torch."""
