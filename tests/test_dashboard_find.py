"""Finding an aircraft and watching some, without a browser."""

from __future__ import annotations

from web.dashboard.finder import WatchList, format_watch, parse_watch, suggest

FLEET = [{"icao24": "3c6444", "callsign": "DLH4AB  ", "country": "Germany"},
         {"icao24": "3c6445", "callsign": "DLH9X", "country": "Germany"},
         {"icao24": "39de4f", "callsign": "AFR123", "country": "France"},
         {"icao24": "a0b1c2", "callsign": "UAL1DLH", "country": "United States"},
         {"icao24": "dlh000", "callsign": "", "country": ""}]


def test_suggestions_rank_an_exact_icao24_then_its_prefix_then_a_callsign_prefix_then_a_part():
    assert suggest("3c6444", FLEET)[0] == ("3c6444", "DLH4AB (3c6444), Germany")
    assert [i for i, _ in suggest("3c64", FLEET)] == ["3c6444", "3c6445"]
    assert [i for i, _ in suggest("dlh", FLEET)] == ["dlh000", "3c6444", "3c6445", "a0b1c2"]
    assert [i for i, _ in suggest(" afr1 ", FLEET)] == ["39de4f"]
    assert suggest("d", FLEET) == [] and suggest("zzz", FLEET) == []
    assert len(suggest("dlh", FLEET, most=2)) == 2


def test_a_watch_list_is_text_the_address_and_the_browser_keep_and_its_bad_parts_are_named():
    entries, refused = parse_watch("AFR123, 3c6444 x  <script>,, dlh9x")
    assert entries == {"afr123", "3c6444", "dlh9x"} and refused == ["x", "<script>"]
    assert format_watch(entries) == "3c6444,afr123,dlh9x"
    assert parse_watch(format_watch(entries)) == (entries, [])


def test_a_watched_aircraft_is_told_when_it_appears_and_for_each_new_flag_once():
    watch = WatchList()
    watch.set({"afr123", "3c6445"})

    def flags(row):
        return row["alerts"]

    def row(icao24, callsign, alerts=()):
        return {"icao24": icao24, "callsign": callsign, "country": "France", "alerts": list(alerts)}

    assert watch.changes([row("aaaaaa", "BAW1")], flags) == []
    told = watch.changes([row("39de4f", "AFR123"), row("3c6445", "DLH9X", ["emergency squawk 7700"])], flags)
    assert [k for k, _ in told] == ["info", "info", "warning"]
    assert "AFR123 (39de4f)" in told[0][1] and "emergency squawk 7700" in told[2][1]
    assert watch.changes([row("39de4f", "AFR123"), row("3c6445", "DLH9X", ["emergency squawk 7700"])], flags) == []
    (again,) = watch.changes([row("39de4f", "AFR123", ["emergency squawk 7500"])], flags)
    assert again[0] == "warning" and "7500" in again[1]
    watch.set({"3c6445"})  # taken off the list: forgotten, told again if put back
    watch.set({"3c6445", "afr123"})
    assert [k for k, _ in watch.changes([row("39de4f", "AFR123", ["emergency squawk 7500"])], flags)] == [
        "info", "warning"]
