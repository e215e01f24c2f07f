//! Times on the wire are `google.protobuf.Timestamp` in UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Datelike, NaiveDate, Utc};

/// `time` as a protobuf timestamp.
pub fn to_proto(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: time.timestamp(), nanos: time.timestamp_subsec_nanos() as i32 }
}

/// A protobuf timestamp as a time, or `None` when it is out of range.
pub fn from_proto(time: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    let nanos = u32::try_from(time.nanos).ok().filter(|nanos| *nanos < 1_000_000_000)?;
    DateTime::from_timestamp(time.seconds, nanos)
}

/// A `crm.common.v1.Date` as a calendar date, or `None` when no such day exists.
pub fn date_from_proto(date: &crm_proto::common::v1::Date) -> Option<NaiveDate> {
    let (month, day) = (u32::try_from(date.month).ok()?, u32::try_from(date.day).ok()?);
    NaiveDate::from_ymd_opt(date.year, month, day).filter(|_| (1..=9999).contains(&date.year))
}

/// A calendar date as a `crm.common.v1.Date`.
pub fn date_to_proto(date: NaiveDate) -> crm_proto::common::v1::Date {
    crm_proto::common::v1::Date { year: date.year(), month: date.month() as i32, day: date.day() as i32 }
}

/// How long ago `time` was: zero when it is missing or in the future.
pub fn elapsed_since(time: Option<&prost_types::Timestamp>) -> Duration {
    elapsed_between(time, SystemTime::now())
}

/// How long before `now` `time` was: zero when it is missing or later.
pub fn elapsed_between(time: Option<&prost_types::Timestamp>, now: SystemTime) -> Duration {
    let Some(time) = time else { return Duration::ZERO };
    let seconds = u64::try_from(time.seconds).unwrap_or(0);
    let nanos = u32::try_from(time.nanos).unwrap_or(0);
    now.duration_since(UNIX_EPOCH + Duration::new(seconds, nanos)).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_and_the_future_is_no_delay() {
        let now = Utc::now();
        let elapsed = elapsed_since(Some(&to_proto(now - chrono::Duration::seconds(5))));
        assert!(elapsed >= Duration::from_secs(5) && elapsed < Duration::from_secs(60), "{elapsed:?}");
        assert_eq!(elapsed_since(Some(&to_proto(now + chrono::Duration::hours(1)))), Duration::ZERO);
        assert_eq!(elapsed_since(None), Duration::ZERO);
        assert_eq!(from_proto(&to_proto(now)), Some(now));
        assert_eq!(from_proto(&prost_types::Timestamp { seconds: 0, nanos: -1 }), None);
        let leap = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
        assert_eq!(date_from_proto(&date_to_proto(leap)), Some(leap));
        assert_eq!(date_from_proto(&crm_proto::common::v1::Date { year: 2023, month: 2, day: 29 }), None);
    }
}
