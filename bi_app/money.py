"""Money in the data's currency, written the way the user's locale writes it (Babel's CLDR data).

The currency is the data's (a ``currency`` column at import, stored with the
data) or ``BI_CURRENCY``; the locale is ``BI_LOCALE``. Pages, charts, tables
and the report all format through one :class:`MoneyFormat`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from babel import Locale
from babel.numbers import format_currency, get_currency_precision, get_currency_symbol
from sqlalchemy import Connection

from data_layer.meta import data_currency

if TYPE_CHECKING:
    from bi_app.config import Config


@dataclass(frozen=True)
class MoneyFormat:
    """How money is written: ISO 4217 ``currency`` in ``locale`` (e.g. GBP in en_GB: £1,234.50)."""

    currency: str = "USD"
    locale: str = "en_US"

    def __call__(self, value: float | None, *, whole: bool = False) -> str:
        """``value`` with its currency sign, separators and cents (none with ``whole``); "—" for no value."""
        if value is None or value != value:
            return "—"
        pattern = self._pattern.replace(".00", "") if whole else None
        # Rounded to what is written first, and + 0.0: a sum that is zero but for float noise is
        # "$0.00", never "−$0.00".
        value = round(float(value), 0 if whole else get_currency_precision(self.currency)) + 0.0
        text = format_currency(value, self.currency, format=pattern,
                               locale=self.locale, currency_digits=not whole)
        return text.replace("-", "−", 1)  # a real minus sign

    @cached_property
    def _pattern(self) -> str:
        return Locale.parse(self.locale).currency_formats["standard"].pattern.split(";")[0]

    @property
    def symbol(self) -> str:
        """The currency's sign in this locale (£, €, US$ ...)."""
        return get_currency_symbol(self.currency, locale=self.locale)

    @property
    def symbol_first(self) -> bool:
        return self._pattern.lstrip().startswith("¤")

    def axis(self) -> dict[str, str | bool]:
        """Plotly axis settings that write ticks in this currency."""
        if self.symbol_first:
            return {"tickprefix": self.symbol, "separatethousands": True}
        return {"ticksuffix": f"\u00a0{self.symbol}", "separatethousands": True}

    def hover(self, reference: str, decimals: int = 2) -> str:
        """A plotly hover template fragment for the value at ``reference`` (e.g. ``y``)."""
        number = f"%{{{reference}:,.{decimals}f}}"
        return f"{self.symbol}{number}" if self.symbol_first else f"{number}\u00a0{self.symbol}"

    @property
    def separators(self) -> str:
        """Plotly's layout ``separators``: this locale's decimal mark, then its grouping mark."""
        symbols = Locale.parse(self.locale).number_symbols
        symbols = symbols.get("latn", symbols) if "latn" in symbols else symbols
        return f"{symbols['decimal']}{symbols['group']}"

    def excel(self, decimals: int = 2) -> str:
        """An Excel number format for this currency (the symbol where the locale puts it)."""
        digits = "0." + "0" * decimals if decimals else "0"
        body = f"#,##{digits}"
        symbol = self.symbol.replace('"', "")
        return f'"{symbol}"{body};-"{symbol}"{body}' if self.symbol_first else f'{body} "{symbol}";-{body} "{symbol}"'


#: What money looks like until a request says otherwise (the demo's dollars).
DEFAULT_FORMAT = MoneyFormat()


def data_money_format(conn: Connection, config: Config | None = None) -> MoneyFormat:
    """The money format of the data behind ``conn``: its recorded currency, else ``BI_CURRENCY``,
    in ``BI_LOCALE`` (of ``config``, else of the environment)."""
    from bi_app.config import Config

    config = config or Config.from_env()
    return MoneyFormat(data_currency(conn) or config.currency, config.locale)
