"""The parser builds the syntax tree LANGUAGE.md describes, and the printer inverts it."""
from dsl import nodes as n
from dsl.parser import parse_string
from dsl.printer import format_program

EIGHT = """\
model EightSchools
data J: int
data y: real[J]
data sigma: real<lower=0>[J]
mu ~ Normal(0, 5)
tau ~ HalfCauchy(5)
for j in 1..J:
    eta[j] ~ Normal(0, 1)
    theta[j] = mu + tau * eta[j]
    y[j] ~ Normal(theta[j], sigma[j])
"""


def test_eight_schools_tree():
    program = parse_string(EIGHT)
    assert program.name == n.Name("EightSchools")
    loop = program.body[-1]
    assert isinstance(loop, n.For) and loop.var.id == "j"
    assign = loop.body[1]
    assert assign == n.Assign(
        n.Target(n.Name("theta"), (n.Name("j"),)),
        n.Binary("+", n.Name("mu"),
                 n.Binary("*", n.Name("tau"), n.Index(n.Name("eta"), (n.Name("j"),)))))
    assert assign.span.line == 9 and assign.span.column == 5


def test_power_binds_tighter_than_leading_minus_and_is_right_associative():
    (stmt,) = parse_string("x = -a^b^c\n").body
    assert stmt.value == n.Unary("-", n.Binary("^", n.Name("a"),
                                                 n.Binary("^", n.Name("b"), n.Name("c"))))


def test_ranges_lex_next_to_integers():
    (stmt,) = parse_string("x = y[K+1..2*L, 1..N]\n").body
    first, second = stmt.value.items
    assert isinstance(first, n.Slice) and first.range.lo == n.Binary("+", n.Name("K"), n.Number(1))
    assert second == n.Slice(n.Range(n.Number(1), n.Name("N")))


def test_round_trip_keeps_comments():
    text = ("# head\nmodel M  # trailing\n\nx ~ Normal(0, 1)  # prior\nfor i in 1..N:\n"
            "    # lead\n    y[i] ~ Normal(x, 1)\n    # closing\n# end\n")
    program = parse_string(text)
    assert format_program(program) == text
    assert parse_string(format_program(program)) == program
