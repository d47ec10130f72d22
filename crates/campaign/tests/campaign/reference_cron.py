"""Fire times of daily cron jobs (fixed hour and minute) across daylight-saving changes,
computed independently of Clarion: Python's zoneinfo over the system's tz database, with
cronie's rule for jobs at a set hour (a local time that does not exist fires once, at the
moment the clocks jump; one that happens twice fires once, at its first occurrence).

Reads {"from": "YYYY-MM-DD", "to": "YYYY-MM-DD", "jobs": [[zone, hour, minute], ...]} on
stdin; writes {"zone HH:MM": ["YYYY-MM-DDTHH:MM:SSZ", ...]} (one per local day in
[from, to)) on stdout.
"""

import json
import sys
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

request = json.load(sys.stdin)
first = date.fromisoformat(request["from"])
last = date.fromisoformat(request["to"])
MINUTE = timedelta(minutes=1)
answer = {}
for zone_name, hour, minute in request["jobs"]:
    zone = ZoneInfo(zone_name)
    fires = []
    day = first
    while day < last:
        local = datetime(day.year, day.month, day.day, hour, minute)
        # fold=0: the first occurrence of a repeated time; for a time that does not exist,
        # the offset before the jump, which lands after it (PEP 495).
        at = local.replace(tzinfo=zone, fold=0).astimezone(timezone.utc)
        if at.astimezone(zone).replace(tzinfo=None) != local:
            # Walk back to the first instant with the offset after the jump.
            offset = at.astimezone(zone).utcoffset()
            while (at - MINUTE).astimezone(zone).utcoffset() == offset:
                at -= MINUTE
        fires.append(at.strftime("%Y-%m-%dT%H:%M:%SZ"))
        day += timedelta(days=1)
    answer[f"{zone_name} {hour:02d}:{minute:02d}"] = fires
json.dump(answer, sys.stdout)
