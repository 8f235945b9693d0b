"""R36 (on a3d6619): `Book.drift_from` is the imbalance when a fee's drift first took ρ below the config's - not
a halving from above it (balance_rho raised ρ) - and the value stop never waits for less imbalance than the kWh
stop's own (a drift that began on a balanced book kept drift_from 0.0: the stop then waited for 2 Wh)."""

from __future__ import annotations

from peergrid_controller.dayexchange import Book, DayAheadConfig

TICK = 10**6
BASE = [(100_000, 0), (-100_000, 0), (0, 50_000), (0, -50_000)]
STANDING = [(100_500, 0), (-100_000, 0), (0, 50_000), (0, -50_000)]  # 0.5 kWh unmatched, nothing moving


def raised_book() -> Book:
    """A fee day's book whose balancing doubled ρ above the config's (10 iterations, the imbalance dominating)."""
    book = Book(DayAheadConfig(exchange_fee=TICK, rho_max=0.04), [200_000_000] * 2, 4, TICK)
    book.take(BASE)
    for _ in range(10):
        book.advance(STANDING, 0.01)
    assert book.rho == 2 * book.rho_min and book.drift_from is None
    return book


def test_a_halving_back_to_the_configs_rho_is_no_drift_below_it() -> None:
    book = raised_book()
    book.advance([(99_700, 0), (-99_700, 0), (0, 50_000), (0, -50_000)], 0.01)  # every MG less, balanced
    assert book.rho == book.rho_min
    assert book.drift_from is None and not book.lowered


def test_a_drift_that_began_on_a_balanced_book_waits_no_longer_than_the_kwh_stop() -> None:
    book = raised_book()
    book.advance([(99_700, 0), (-99_700, 0), (0, 50_000), (0, -50_000)], 0.01)
    book.advance([(99_600, 0), (-99_600, 0), (0, 50_000), (0, -50_000)], 0.01)  # balanced again: below now
    assert book.rho < book.rho_min and book.drift_from == 0.0 and book.lowered
    book.rho = book.rho_min  # back, as the doubling brings it
    book.advance([(99_600, 0), (-99_590, 0), (0, 50_000), (0, -50_000)], 0.01)  # 10 Wh unmatched
    assert book.primal == 0.01 and not book.lowered  # within the kWh stop's 0.012: the value stop may come
