//! The nightly window for routine work: `"HH:MM-HH:MM"` in local time, which
//! may wrap past midnight (`"19:00-07:00"`). Stat work ignores it.

use std::fmt;
use std::str::FromStr;

/// A daily window of local time, start inclusive, end exclusive, in minutes since midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NightlyWindow {
    pub start_minute: u16,
    pub end_minute: u16,
}

impl NightlyWindow {
    /// Whether `minute_of_day` (0..1440, local time) falls inside the window.
    /// A window whose start equals its end covers the whole day.
    pub fn contains(&self, minute_of_day: u16) -> bool {
        let (s, e, m) = (self.start_minute, self.end_minute, minute_of_day);
        if s == e {
            true
        } else if s < e {
            (s..e).contains(&m)
        } else {
            m >= s || m < e
        }
    }
}

impl FromStr for NightlyWindow {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (start, end) = text
            .split_once('-')
            .ok_or_else(|| format!("\"{text}\" is not of the form HH:MM-HH:MM (for example 19:00-07:00)"))?;
        Ok(Self { start_minute: minute_of_day(start.trim(), text)?, end_minute: minute_of_day(end.trim(), text)? })
    }
}

fn minute_of_day(hh_mm: &str, whole: &str) -> Result<u16, String> {
    let bad = || format!("\"{whole}\": \"{hh_mm}\" is not a time of day HH:MM (00:00 to 23:59)");
    let (h, m) = hh_mm.split_once(':').ok_or_else(bad)?;
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

impl fmt::Display for NightlyWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, e) = (self.start_minute, self.end_minute);
        write!(f, "{:02}:{:02}-{:02}:{:02}", s / 60, s % 60, e / 60, e % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: u16, m: u16) -> u16 {
        h * 60 + m
    }

    #[test]
    fn a_window_across_midnight() {
        let w: NightlyWindow = "19:00-07:00".parse().unwrap_or(NightlyWindow { start_minute: 0, end_minute: 1 });
        assert_eq!(w, NightlyWindow { start_minute: at(19, 0), end_minute: at(7, 0) });
        assert!(w.contains(at(19, 0)));
        assert!(w.contains(at(23, 59)));
        assert!(w.contains(at(0, 0)));
        assert!(w.contains(at(6, 59)));
        assert!(!w.contains(at(7, 0)));
        assert!(!w.contains(at(12, 0)));
        assert!(!w.contains(at(18, 59)));
        assert_eq!(w.to_string(), "19:00-07:00");
    }

    #[test]
    fn a_window_within_one_day_and_a_whole_day() {
        let w: NightlyWindow = "01:30-05:00".parse().unwrap_or(NightlyWindow { start_minute: 0, end_minute: 0 });
        assert!(w.contains(at(1, 30)) && w.contains(at(4, 59)));
        assert!(!w.contains(at(1, 29)) && !w.contains(at(5, 0)));
        let all: NightlyWindow = "00:00-00:00".parse().unwrap_or(NightlyWindow { start_minute: 0, end_minute: 1 });
        assert!(all.contains(0) && all.contains(at(12, 0)) && all.contains(at(23, 59)));
    }

    #[test]
    fn malformed_windows_are_refused_with_the_text() {
        for bad in ["19:00", "24:00-07:00", "19:60-07:00", "7pm-7am", "19:00-07", ""] {
            let err = bad.parse::<NightlyWindow>().err().unwrap_or_default();
            assert!(!err.is_empty(), "{bad} was accepted");
            assert!(err.contains(&format!("\"{bad}\"")), "{err}");
        }
    }
}
