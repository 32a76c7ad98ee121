//! Korean business days (SPEC §5), all in Asia/Seoul.
//!
//! The holiday data is `config/holidays-kr.toml`, compiled in and replaceable by
//! `[calendar] holidays_file`, plus `[calendar] extra_holidays`. A year not listed in the data's
//! `covered_years` would silently count every weekday as a business day, so any computation that
//! reaches one logs a loud warning (once per year per process).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Asia::Seoul;
use serde::Deserialize;

/// The shipped data file.
pub const BUILTIN_HOLIDAYS: &str = include_str!("../../config/holidays-kr.toml");

/// How far a business-day walk may go before we call the data broken (≈ 2 years of days).
const MAX_WALK_DAYS: u32 = 800;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HolidayKind {
    Public,
    Substitute,
    Temporary,
    Election,
    Bank,
    /// From `[calendar] extra_holidays`.
    Extra,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Holiday {
    pub date: NaiveDate,
    pub name: String,
    pub kind: HolidayKind,
    pub source: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HolidayFile {
    covered_years: Vec<i32>,
    #[serde(default)]
    day: Vec<RawHoliday>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHoliday {
    date: toml::value::Datetime,
    name: String,
    kind: HolidayKind,
    source: String,
}

#[derive(Debug)]
pub struct Calendar {
    holidays: BTreeMap<NaiveDate, Holiday>,
    covered: BTreeSet<i32>,
    warned: Mutex<BTreeSet<i32>>,
}

impl Clone for Calendar {
    fn clone(&self) -> Self {
        Calendar { holidays: self.holidays.clone(), covered: self.covered.clone(), warned: Mutex::new(BTreeSet::new()) }
    }
}

impl Calendar {
    /// The shipped Korean calendar.
    pub fn builtin() -> Calendar {
        // The shipped file is tested to parse; should it ever not, an empty calendar with a warning
        // beats refusing to start.
        Calendar::from_toml(BUILTIN_HOLIDAYS).unwrap_or_else(|e| {
            tracing::error!(error = %e, "Built-in holiday data is broken; every weekday counts as a business day");
            Calendar { holidays: BTreeMap::new(), covered: BTreeSet::new(), warned: Mutex::new(BTreeSet::new()) }
        })
    }

    /// The calendar a configuration asks for: its data file (or the shipped one) plus extra days.
    pub fn from_config(c: &crate::config::CalendarConfig) -> anyhow::Result<Calendar> {
        let mut cal = match &c.holidays_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("cannot read calendar.holidays_file {}: {e}", path.display()))?;
                Calendar::from_toml(&text)
                    .map_err(|e| anyhow::anyhow!("calendar.holidays_file {}: {e}", path.display()))?
            }
            None => Calendar::builtin(),
        };
        cal.add_extra(&c.extra_holidays);
        Ok(cal)
    }

    pub fn from_toml(text: &str) -> Result<Calendar, String> {
        let file: HolidayFile = toml::from_str(text).map_err(|e| e.to_string().trim().replace('\n', " "))?;
        let mut holidays = BTreeMap::new();
        for raw in file.day {
            let date = raw
                .date
                .date
                .and_then(|d| NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day)))
                .ok_or_else(|| format!("{} is not a date", raw.date))?;
            holidays.insert(date, Holiday { date, name: raw.name, kind: raw.kind, source: raw.source });
        }
        Ok(Calendar {
            holidays,
            covered: file.covered_years.into_iter().collect(),
            warned: Mutex::new(BTreeSet::new()),
        })
    }

    /// Add operator-declared non-business days (임시공휴일 announced at short notice).
    pub fn add_extra(&mut self, dates: &[NaiveDate]) {
        for &date in dates {
            self.holidays.entry(date).or_insert_with(|| Holiday {
                date,
                name: "extra holiday".to_owned(),
                kind: HolidayKind::Extra,
                source: "[calendar] extra_holidays".to_owned(),
            });
        }
    }

    pub fn covered_years(&self) -> &BTreeSet<i32> {
        &self.covered
    }

    /// The holidays of `year` (weekends are non-business days too, and not listed), by date.
    pub fn holidays_in(&self, year: i32) -> Vec<&Holiday> {
        let (Some(from), Some(to)) = (NaiveDate::from_ymd_opt(year, 1, 1), NaiveDate::from_ymd_opt(year, 12, 31))
        else {
            return Vec::new();
        };
        self.holidays.range(from..=to).map(|(_, h)| h).collect()
    }

    pub fn holiday(&self, date: NaiveDate) -> Option<&Holiday> {
        self.holidays.get(&date)
    }

    /// Whether a computation touching `date` can be trusted; warns once per uncovered year.
    pub fn covers(&self, date: NaiveDate) -> bool {
        let year = date.year();
        if self.covered.contains(&year) {
            return true;
        }
        if let Ok(mut warned) = self.warned.lock() {
            if warned.insert(year) {
                tracing::warn!(
                    year,
                    covered = ?self.covered,
                    "Korean holiday data does not cover {year}: every weekday counts as a business day. \
                     Add the year to the holiday file or list its holidays in [calendar] extra_holidays"
                );
            }
        }
        false
    }

    /// Monday–Friday and not a holiday.
    pub fn is_business_day(&self, date: NaiveDate) -> bool {
        self.covers(date);
        !matches!(date.weekday(), Weekday::Sat | Weekday::Sun) && !self.holidays.contains_key(&date)
    }

    /// The `n`-th business day after `date` (`n = 0` is `date` itself).
    pub fn add_business_days(&self, date: NaiveDate, n: u32) -> NaiveDate {
        let mut day = date;
        let mut left = n;
        let mut walked = 0;
        while left > 0 && walked < MAX_WALK_DAYS {
            day = day.succ_opt().unwrap_or(day);
            walked += 1;
            if self.is_business_day(day) {
                left -= 1;
            }
        }
        day
    }

    /// Business days in `(from, to]`: how long something has waited.
    pub fn business_days_between(&self, from: NaiveDate, to: NaiveDate) -> u32 {
        let mut n = 0;
        let mut day = from;
        let mut walked = 0;
        while day < to && walked < MAX_WALK_DAYS * 10 {
            day = day.succ_opt().unwrap_or(to);
            walked += 1;
            if self.is_business_day(day) {
                n += 1;
            }
        }
        n
    }
}

/// The date in Asia/Seoul of an instant.
pub fn kst_date(t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&Seoul).date_naive()
}

/// The last second of a day in Asia/Seoul (23:59:59 KST), as UTC: "due at the end of the day".
pub fn end_of_day(date: NaiveDate) -> DateTime<Utc> {
    let t = NaiveTime::from_hms_opt(23, 59, 59).unwrap_or(NaiveTime::MIN);
    // Seoul has had no DST since 1988, so the local time is never ambiguous or missing.
    Seoul.from_local_datetime(&date.and_time(t)).earliest().map_or_else(
        || {
            let utc = Utc.from_utc_datetime(&date.and_time(t));
            utc.checked_sub_signed(chrono::Duration::hours(9)).unwrap_or(utc)
        },
        |local| local.with_timezone(&Utc),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn shipped_data_parses_and_covers_2024_to_2027() {
        let cal = Calendar::from_toml(BUILTIN_HOLIDAYS).unwrap();
        assert_eq!(cal.covered_years().iter().copied().collect::<Vec<_>>(), vec![2024, 2025, 2026, 2027]);
        assert!(cal.holidays.len() >= 80);
        assert_eq!(cal.holiday(d("2027-02-09")).unwrap().kind, HolidayKind::Substitute);
        assert_eq!(cal.holiday(d("2026-06-03")).unwrap().kind, HolidayKind::Election);
        assert_eq!(cal.holiday(d("2024-05-01")).unwrap().kind, HolidayKind::Bank);
    }

    #[test]
    fn guidance_due_table() {
        let cal = Calendar::builtin();
        // (applied, N, due date)
        let table = [
            // 2027 설날 (02-06..08) + substitute 02-09: Fri 02-05 → Wed 10, Thu 11, Fri 12.
            ("2027-02-05", 3, "2027-02-12"),
            // 2026-06-03 local election (Wed): Tue 06-02 → Thu 04, Fri 05, Mon 08.
            ("2026-06-02", 3, "2026-06-08"),
            // An ordinary week: Mon → Thu.
            ("2026-11-23", 3, "2026-11-26"),
            // Over a weekend: Thu → Tue.
            ("2026-11-26", 3, "2026-12-01"),
            // 2026 추석 24–26 with no substitute (26 is a Saturday): Wed 23 → Mon 28, Tue 29, Wed 30.
            ("2026-09-23", 3, "2026-09-30"),
            // 2026 개천절 substitute Mon 10-05 and 한글날 Fri 10-09: Fri 10-02 → Tue 6, Wed 7, Thu 8.
            ("2026-10-02", 3, "2026-10-08"),
            // 노동절 2026-05-01 (Fri) and 어린이날 Tue 05-05: Thu 04-30 → Mon 4, Wed 6, Thu 7.
            ("2026-04-30", 3, "2026-05-07"),
            // Christmas 2027 substitute Mon 12-27: Thu 12-23 → Fri 24, Tue 28, Wed 29.
            ("2027-12-23", 3, "2027-12-29"),
        ];
        for (applied, n, due) in table {
            assert_eq!(cal.add_business_days(d(applied), n), d(due), "applied {applied} + {n}");
        }
    }

    #[test]
    fn election_day_and_substitute_days_are_not_business_days() {
        let cal = Calendar::builtin();
        assert!(!cal.is_business_day(d("2026-06-03")));
        assert!(!cal.is_business_day(d("2027-02-09")));
        assert!(!cal.is_business_day(d("2026-11-28"))); // a Saturday
        assert!(cal.is_business_day(d("2026-06-04")));
    }

    #[test]
    fn extra_holidays_count_as_non_business_days() {
        let mut cal = Calendar::builtin();
        cal.add_extra(&[d("2026-11-24")]);
        assert!(!cal.is_business_day(d("2026-11-24")));
        assert_eq!(cal.add_business_days(d("2026-11-23"), 3), d("2026-11-27"));
    }

    #[test]
    fn uncovered_years_are_reported() {
        let cal = Calendar::builtin();
        assert!(cal.covers(d("2027-06-01")));
        assert!(!cal.covers(d("2028-01-03")));
    }

    #[test]
    fn business_days_between_counts_the_half_open_interval() {
        let cal = Calendar::builtin();
        assert_eq!(cal.business_days_between(d("2027-02-05"), d("2027-02-12")), 3);
        assert_eq!(cal.business_days_between(d("2026-11-23"), d("2026-11-23")), 0);
    }

    #[test]
    fn end_of_day_is_2359_59_in_seoul() {
        let due = end_of_day(d("2027-02-12"));
        assert_eq!(due.to_rfc3339(), "2027-02-12T14:59:59+00:00");
        assert_eq!(kst_date(due), d("2027-02-12"));
    }
}
