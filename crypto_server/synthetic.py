"""Deterministic synthetic prices for a universe of real (and, past the list, made-up) assets.

Each asset has its own random generator seeded from (seed, symbol), so asking for more
assets never changes the numbers of the first ones. All assets share a seeded market
factor (with a crash on 2020-03-12, as happened), exchanges trade at a small persistent
premium or discount to each other, some pairs are not listed everywhere or are listed
late, and a few days are missing, like real exports.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import random

from math import floor, log10

from .data import Asset, Dataset, DayRange, _pack, _Series

FIRST_DAY = dt.date(2019, 12, 20)
LAST_DAY = dt.date(2020, 4, 30)
MAX_ASSETS = 5000

_EXCHANGES = (
    "bitfinex",
    "bitstamp",
    "bittrex",
    "cexio",
    "coinbase-pro",
    "hitbtc",
    "huobi",
    "kraken",
    "mexbt",
    "okex",
    "poloniex",
)

# Chance that an exchange lists an asset outside the top ten (mexbt was a small exchange).
_LISTING = {e: 0.9 for e in _EXCHANGES} | {"mexbt": 0.2, "cexio": 0.6}
_TOP_LISTED_EVERYWHERE = 10
_MISSING_DAY = 0.025
_LATE_LISTING = 0.1

# Market-wide daily log returns that happened regardless of the seed ("Black Thursday").
_SHOCKS = {dt.date(2020, 3, 12): -0.45, dt.date(2020, 3, 13): 0.06}

# Symbol, name, founded, approximate USD price in December 2019, kind; by market cap then.
_REAL: tuple[tuple[str, str, int, float, str], ...] = (
    ("BTC", "Bitcoin", 2009, 7150.0, "coin"),
    ("ETH", "Ethereum", 2015, 128.0, "coin"),
    ("XRP", "XRP", 2012, 0.19, "coin"),
    ("USDT", "Tether", 2014, 1.0, "stable"),
    ("BCH", "Bitcoin Cash", 2017, 185.0, "fork"),
    ("LTC", "Litecoin", 2011, 42.0, "coin"),
    ("BSV", "Bitcoin SV", 2018, 92.0, "fork"),
    ("EOS", "EOS", 2018, 2.6, "coin"),
    ("BNB", "Binance Coin", 2017, 13.8, "token"),
    ("XTZ", "Tezos", 2018, 1.35, "coin"),
    ("XLM", "Stellar", 2014, 0.046, "coin"),
    ("LEO", "UNUS SED LEO", 2019, 0.95, "token"),
    ("ADA", "Cardano", 2017, 0.034, "coin"),
    ("TRX", "TRON", 2017, 0.0135, "coin"),
    ("XMR", "Monero", 2014, 46.0, "coin"),
    ("LINK", "Chainlink", 2017, 2.0, "token"),
    ("HT", "Huobi Token", 2018, 3.6, "token"),
    ("ETC", "Ethereum Classic", 2016, 3.6, "fork"),
    ("NEO", "Neo", 2014, 8.6, "coin"),
    ("USDC", "USD Coin", 2018, 1.0, "stable"),
    ("CRO", "Crypto.com Coin", 2018, 0.033, "token"),
    ("DASH", "Dash", 2014, 44.0, "coin"),
    ("MIOTA", "IOTA", 2016, 0.18, "coin"),
    ("ATOM", "Cosmos", 2019, 3.8, "coin"),
    ("XEM", "NEM", 2015, 0.034, "coin"),
    ("MKR", "Maker", 2017, 620.0, "token"),
    ("ONT", "Ontology", 2018, 0.42, "coin"),
    ("ZEC", "Zcash", 2016, 28.0, "coin"),
    ("DOGE", "Dogecoin", 2013, 0.0021, "coin"),
    ("BAT", "Basic Attention Token", 2017, 0.18, "token"),
    ("VET", "VeChain", 2015, 0.0047, "coin"),
    ("PAX", "Paxos Standard", 2018, 1.0, "stable"),
    ("DCR", "Decred", 2016, 17.0, "coin"),
    ("QTUM", "Qtum", 2016, 1.3, "coin"),
    ("TUSD", "TrueUSD", 2018, 1.0, "stable"),
    ("ZRX", "0x", 2017, 0.19, "token"),
    ("RVN", "Ravencoin", 2018, 0.02, "coin"),
    ("ALGO", "Algorand", 2019, 0.2, "coin"),
    ("BTG", "Bitcoin Gold", 2017, 4.0, "fork"),
    ("OMG", "OmiseGO", 2017, 0.58, "token"),
    ("ICX", "ICON", 2017, 0.14, "coin"),
    ("DAI", "Dai", 2017, 1.0, "stable"),
    ("LSK", "Lisk", 2016, 0.72, "coin"),
    ("REP", "Augur", 2015, 9.0, "token"),
    ("NANO", "Nano", 2015, 0.55, "coin"),
    ("KNC", "Kyber Network", 2017, 0.18, "token"),
    ("WAVES", "Waves", 2016, 0.6, "coin"),
    ("BTM", "Bytom", 2017, 0.06, "coin"),
    ("MONA", "MonaCoin", 2014, 1.1, "coin"),
    ("DGB", "DigiByte", 2014, 0.0045, "coin"),
    ("HOT", "Holo", 2018, 0.00055, "token"),
    ("THETA", "Theta Network", 2017, 0.09, "coin"),
    ("SC", "Siacoin", 2015, 0.0013, "coin"),
    ("ZIL", "Zilliqa", 2017, 0.0043, "coin"),
    ("ENJ", "Enjin Coin", 2017, 0.03, "token"),
    ("NEXO", "Nexo", 2018, 0.085, "token"),
    ("KMD", "Komodo", 2016, 0.53, "coin"),
    ("SNT", "Status", 2017, 0.011, "token"),
    ("XVG", "Verge", 2014, 0.0027, "coin"),
    ("BTT", "BitTorrent", 2019, 0.00031, "token"),
    ("STEEM", "Steem", 2016, 0.13, "coin"),
    ("MANA", "Decentraland", 2017, 0.031, "token"),
    ("IOST", "IOST", 2018, 0.0034, "coin"),
    ("ARDR", "Ardor", 2016, 0.036, "coin"),
    ("QNT", "Quant", 2018, 3.8, "token"),
    ("GNT", "Golem", 2016, 0.036, "token"),
    ("MCO", "MCO", 2017, 3.0, "token"),
    ("BNT", "Bancor", 2017, 0.2, "token"),
    ("HBAR", "Hedera Hashgraph", 2019, 0.012, "coin"),
    ("ZEN", "Horizen", 2017, 5.0, "coin"),
    ("ELF", "aelf", 2017, 0.065, "token"),
    ("XZC", "Zcoin", 2016, 3.5, "coin"),
    ("RLC", "iExec RLC", 2017, 0.17, "token"),
    ("STRAT", "Stratis", 2016, 0.3, "coin"),
    ("FCT", "Factom", 2015, 2.4, "coin"),
    ("AE", "Aeternity", 2017, 0.12, "coin"),
    ("REN", "Ren", 2017, 0.038, "token"),
    ("ETN", "Electroneum", 2017, 0.0035, "coin"),
    ("MAID", "MaidSafeCoin", 2014, 0.12, "token"),
    ("NPXS", "Pundi X", 2017, 0.00017, "token"),
    ("LRC", "Loopring", 2017, 0.02, "token"),
    ("ANT", "Aragon", 2017, 0.45, "token"),
    ("WAXP", "WAX", 2017, 0.027, "token"),
    ("IOTX", "IoTeX", 2018, 0.0045, "token"),
    ("GRIN", "Grin", 2019, 1.2, "coin"),
    ("SNX", "Synthetix", 2018, 0.95, "token"),
    ("CKB", "Nervos Network", 2019, 0.004, "coin"),
    ("KCS", "KuCoin Shares", 2017, 0.7, "token"),
    ("NULS", "NULS", 2017, 0.16, "coin"),
    ("DGD", "DigixDAO", 2016, 25.0, "token"),
    ("ERD", "Elrond", 2019, 0.0025, "token"),
    ("ONE", "Harmony", 2019, 0.0045, "token"),
    ("FTM", "Fantom", 2018, 0.012, "token"),
    ("CHZ", "Chiliz", 2018, 0.011, "token"),
    ("MATIC", "Matic Network", 2019, 0.013, "token"),
    ("BAND", "Band Protocol", 2019, 0.2, "token"),
    ("NMR", "Numeraire", 2017, 6.0, "token"),
    ("CVC", "Civic", 2017, 0.032, "token"),
    ("GNO", "Gnosis", 2017, 11.0, "token"),
    ("POWR", "Power Ledger", 2017, 0.045, "token"),
    ("STORJ", "Storj", 2014, 0.11, "token"),
    ("POLY", "Polymath", 2017, 0.025, "token"),
    ("LOOM", "Loom Network", 2018, 0.017, "token"),
    ("DENT", "Dent", 2017, 0.0006, "token"),
    ("PIVX", "PIVX", 2016, 0.2, "coin"),
    ("SYS", "Syscoin", 2014, 0.025, "coin"),
    ("GAS", "Gas", 2017, 1.1, "token"),
    ("VTC", "Vertcoin", 2014, 0.2, "coin"),
    ("NXT", "Nxt", 2013, 0.015, "coin"),
    ("PPC", "Peercoin", 2012, 0.28, "coin"),
    ("NMC", "Namecoin", 2011, 0.55, "coin"),
    ("FTT", "FTX Token", 2019, 2.0, "token"),
    ("OKB", "OKB", 2019, 2.8, "token"),
    ("TOMO", "TomoChain", 2018, 0.4, "coin"),
    ("BEAM", "Beam", 2019, 0.35, "coin"),
    ("MTL", "Metal", 2017, 0.25, "token"),
    ("WTC", "Waltonchain", 2017, 0.33, "token"),
)

_NOTES = {
    "BCH": "Hard fork of Bitcoin",
    "BSV": "Hard fork of Bitcoin Cash",
    "BTG": "Hard fork of Bitcoin",
    "ETC": "Continuation of the original Ethereum chain",
    "DOGE": "Started as a joke",
}
_STABLE_NOTE = "Stablecoin pegged to the US dollar"

# Idiosyncratic daily volatility by kind; stablecoins follow their own mean-reverting model.
_VOLATILITY = {"coin": 0.03, "fork": 0.035, "token": 0.04, "stable": 0.002}

# Syllables for made-up assets: the first two letters of each are unique, so the
# symbols built from them are too.
_SYLLABLES = (
    "ar", "bo", "cor", "da", "el", "fi", "gra", "hex", "io", "jun", "ka", "lu", "mo",
    "nex", "or", "pa", "qui", "ro", "sol", "ta", "um", "ve", "wo", "xa", "yu", "zen",
)  # fmt: skip
_SUFFIXES = ("coin", "chain", "token", "cash", " Network", " Protocol")


def _universe(count: int) -> list[tuple[Asset, float, str]]:
    """The first ``count`` assets as (asset, December 2019 price, kind): real ones, then made-up."""
    if not 1 <= count <= MAX_ASSETS:
        raise ValueError(f"assets must be between 1 and {MAX_ASSETS}, got {count}")
    assets = []
    for symbol, name, founded, price, kind in _REAL[:count]:
        note = _STABLE_NOTE if kind == "stable" else _NOTES.get(symbol, "")
        assets.append((Asset(symbol, name, founded, note), price, kind))
    real = {a.symbol for a, _, _ in assets}
    i = 0
    while len(assets) < count:
        asset = _made_up(i)
        if asset.symbol not in real:
            assets.append((asset, _made_up_price(i), "token"))
        i += 1
    return assets


@functools.cache
def real_assets() -> dict[str, Asset]:
    """The real assets of the universe by lower-case symbol."""
    return {a.symbol.lower(): a for a, _, _ in _universe(len(_REAL))}


def _made_up(i: int) -> Asset:
    n = len(_SYLLABLES)
    first, second, round_ = _SYLLABLES[i % n], _SYLLABLES[(i // n) % n], i // (n * n)
    symbol = (first[:2] + second[:2]).upper() + (str(round_) if round_ else "")
    name = (first + second).capitalize() + _SUFFIXES[i % len(_SUFFIXES)] + (f" {round_ + 1}" if round_ else "")
    return Asset(symbol, name, 2014 + i % 6)


def _made_up_price(i: int) -> float:
    # Spread over five orders of magnitude, like the long tail of real assets.
    return 10 ** (((i * 7919) % 1000) / 200 - 3)


@functools.lru_cache(maxsize=8)
def build(seed: int, count: int, first: dt.date, last: dt.date) -> Dataset:
    """The synthetic dataset; cached because it is immutable and costs a fraction of a second."""
    if last < first:
        raise ValueError(f"last day {last} is before first day {first}")
    ndays = last.toordinal() - first.toordinal() + 1
    market = _market_returns(seed, first, ndays)
    series: dict[tuple[str, str], _Series] = {}
    assets = _universe(count)
    for rank, (asset, price, kind) in enumerate(assets, start=1):
        symbol = asset.symbol.lower()
        for exchange, rows in _asset_rows(seed, rank, symbol, price, kind, first, market):
            series[(exchange, symbol)] = _pack(rows)
    return Dataset(
        series,
        exchanges=_EXCHANGES,
        symbols=(a.symbol for a, _, _ in assets),
        assets={a.symbol.lower(): a for a, _, _ in assets},
        source=f"synthetic (seed {seed}, {count} assets)",
        days=DayRange(first, last),
    )


def _market_returns(seed: int, first: dt.date, ndays: int) -> list[float]:
    rng = random.Random(f"{seed}/market")
    returns = []
    for t in range(ndays):
        day = dt.date.fromordinal(first.toordinal() + t)
        returns.append(_SHOCKS.get(day, rng.gauss(0.001, 0.025)))
    return returns


def _asset_rows(
    seed: int, rank: int, symbol: str, price: float, kind: str, first: dt.date, market: list[float]
) -> list[tuple[str, dict[int, tuple[float, float, float, float, float]]]]:
    """Per listed exchange, {day ordinal: (open, high, low, close, volume)} for one asset."""
    rng = random.Random(f"{seed}/{symbol}")
    u = rng.random
    ndays = len(market)
    vol = _VOLATILITY[kind] * (0.6 if rank <= 2 else 1.0)

    # The "true" price path every exchange tracks.
    path = []
    p = price * math.exp(rng.gauss(0.0, 0.05))
    if kind == "stable":
        for _ in range(ndays):
            p = 1.0 + 0.5 * (p - 1.0) + rng.gauss(0.0, vol)
            path.append(p)
    else:
        beta = 1.0 if rank == 1 else 0.8 + 0.5 * u()
        for t in range(ndays):
            p *= math.exp(beta * market[t] + rng.gauss(0.0, vol))
            path.append(p)
    day_range = 0.5 * (vol + 0.025 * (kind != "stable"))
    usd_volume = 3e9 / rank**1.2  # traded per day across exchanges

    out = []
    first_ordinal = first.toordinal()
    for exchange in _EXCHANGES:
        listed = rank <= _TOP_LISTED_EVERYWHERE or u() < _LISTING[exchange]
        if not listed:
            continue
        start = int(u() * ndays * 0.8) if u() < _LATE_LISTING else 0
        premium = (u() - 0.5) * 0.008  # this exchange's persistent premium or discount
        share = 0.02 + 0.2 * u()
        rows = {}
        prev_close = path[start] * (1.0 + premium)
        for t in range(start, ndays):
            close = path[t] * (1.0 + premium + (u() - 0.5) * 0.004)
            open_ = prev_close
            high = max(open_, close) * (1.0 + day_range * u())
            low = min(open_, close) * (1.0 - day_range * u())
            volume = usd_volume * share * (0.5 + u()) / close
            prev_close = close
            if u() < _MISSING_DAY:
                continue  # the exchange traded, but the export has a hole here
            # Six significant digits of the close for the whole row, like an exchange's tick
            # size. floor(x * s + 0.5) / s is round(x, digits) at a third of the cost.
            s = 10.0 ** max(0, 5 - floor(log10(close)))
            rows[first_ordinal + t] = (
                floor(open_ * s + 0.5) / s,
                floor(high * s + 0.5) / s,
                floor(low * s + 0.5) / s,
                floor(close * s + 0.5) / s,
                floor(volume * 1e8 + 0.5) / 1e8,
            )
        out.append((exchange, rows))
    return out
