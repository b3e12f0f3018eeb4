"""Type annotations that pure records use and flights_app.typed checks (no Faust import here)."""

from typing import Annotated

#: A count: an int that is not negative.
NonNegative = Annotated[int, "not negative"]
