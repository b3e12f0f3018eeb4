"""Real airports and airlines for the simulator (public ICAO codes and coordinates)."""

from __future__ import annotations

from typing import NamedTuple


class Airport(NamedTuple):
    icao: str
    latitude: float
    longitude: float
    country: str


class Airline(NamedTuple):
    icao: str
    country: str


AIRPORTS: tuple[Airport, ...] = (
    Airport("KJFK", 40.6398, -73.7789, "United States"),
    Airport("KIAD", 38.9445, -77.4558, "United States"),
    Airport("KATL", 33.6367, -84.4281, "United States"),
    Airport("KORD", 41.9786, -87.9048, "United States"),
    Airport("KDFW", 32.8968, -97.0380, "United States"),
    Airport("KDEN", 39.8617, -104.6731, "United States"),
    Airport("KLAX", 33.9425, -118.4081, "United States"),
    Airport("KSFO", 37.6190, -122.3749, "United States"),
    Airport("KSEA", 47.4490, -122.3093, "United States"),
    Airport("KMIA", 25.7932, -80.2906, "United States"),
    Airport("CYYZ", 43.6772, -79.6306, "Canada"),
    Airport("CYVR", 49.1939, -123.1844, "Canada"),
    Airport("MMMX", 19.4363, -99.0721, "Mexico"),
    Airport("SBGR", -23.4356, -46.4731, "Brazil"),
    Airport("SAEZ", -34.8222, -58.5358, "Argentina"),
    Airport("SCEL", -33.3930, -70.7858, "Chile"),
    Airport("EGLL", 51.4706, -0.4619, "United Kingdom"),
    Airport("EGKK", 51.1481, -0.1903, "United Kingdom"),
    Airport("LFPG", 49.0097, 2.5478, "France"),
    Airport("EDDF", 50.0333, 8.5706, "Germany"),
    Airport("EDDM", 48.3538, 11.7861, "Germany"),
    Airport("EHAM", 52.3086, 4.7639, "Netherlands"),
    Airport("LEMD", 40.4719, -3.5626, "Spain"),
    Airport("LEBL", 41.2971, 2.0785, "Spain"),
    Airport("LIRF", 41.8003, 12.2389, "Italy"),
    Airport("LSZH", 47.4647, 8.5492, "Switzerland"),
    Airport("LOWW", 48.1103, 16.5697, "Austria"),
    Airport("EKCH", 55.6180, 12.6561, "Denmark"),
    Airport("ESSA", 59.6519, 17.9186, "Sweden"),
    Airport("EFHK", 60.3172, 24.9633, "Finland"),
    Airport("EPWA", 52.1657, 20.9671, "Poland"),
    Airport("LTFM", 41.2753, 28.7519, "Turkey"),
    Airport("OMDB", 25.2528, 55.3644, "United Arab Emirates"),
    Airport("OTHH", 25.2731, 51.6081, "Qatar"),
    Airport("HECA", 30.1219, 31.4056, "Egypt"),
    Airport("FAOR", -26.1392, 28.2460, "South Africa"),
    Airport("HKJK", -1.3192, 36.9278, "Kenya"),
    Airport("VIDP", 28.5665, 77.1031, "India"),
    Airport("VABB", 19.0887, 72.8679, "India"),
    Airport("VTBS", 13.6900, 100.7501, "Thailand"),
    Airport("WSSS", 1.3644, 103.9915, "Singapore"),
    Airport("VHHH", 22.3080, 113.9185, "China"),
    Airport("ZBAA", 40.0801, 116.5846, "China"),
    Airport("ZSPD", 31.1434, 121.8052, "China"),
    Airport("RJTT", 35.5523, 139.7798, "Japan"),
    Airport("RKSI", 37.4602, 126.4407, "Republic of Korea"),
    Airport("YSSY", -33.9461, 151.1772, "Australia"),
    Airport("YMML", -37.6733, 144.8433, "Australia"),
    Airport("NZAA", -37.0082, 174.7850, "New Zealand"),
)

AIRLINES: tuple[Airline, ...] = (
    Airline("AAL", "United States"),
    Airline("DAL", "United States"),
    Airline("UAL", "United States"),
    Airline("SWA", "United States"),
    Airline("JBU", "United States"),
    Airline("ACA", "Canada"),
    Airline("AMX", "Mexico"),
    Airline("TAM", "Brazil"),
    Airline("BAW", "United Kingdom"),
    Airline("EZY", "United Kingdom"),
    Airline("AFR", "France"),
    Airline("DLH", "Germany"),
    Airline("KLM", "Netherlands"),
    Airline("IBE", "Spain"),
    Airline("RYR", "Ireland"),
    Airline("SWR", "Switzerland"),
    Airline("SAS", "Sweden"),
    Airline("FIN", "Finland"),
    Airline("LOT", "Poland"),
    Airline("THY", "Turkey"),
    Airline("UAE", "United Arab Emirates"),
    Airline("QTR", "Qatar"),
    Airline("SAA", "South Africa"),
    Airline("AIC", "India"),
    Airline("SIA", "Singapore"),
    Airline("CPA", "China"),
    Airline("CCA", "China"),
    Airline("ANA", "Japan"),
    Airline("JAL", "Japan"),
    Airline("KAL", "Republic of Korea"),
    Airline("QFA", "Australia"),
    Airline("ANZ", "New Zealand"),
)
