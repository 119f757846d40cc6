from vitdash.common.units import si


def test_counts_keep_their_digits_with_a_prefix():
    assert si(86_567_656) == "86.6 M" and si(173_000) == "173 k" and si(1_012_610_000_000) == "1.01 T"
    assert si(10_730) == "10.7 k" and si(999) == "999" and si(0.5) == "0.5" and si(17.58e9) == "17.6 G"
