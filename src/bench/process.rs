//! The bench process's memory and CPU, from `/proc/self` (Linux; `None` elsewhere).

/// A field of `/proc/self/status` in MiB (`VmRSS`, `VmHWM`).
fn status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// CPU time of the whole process so far (user + system), from `/proc/self/stat` (in USER_HZ
/// ticks, 100 per second on Linux).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Resets `VmHWM` to the current RSS (Linux 4.0+). Returns whether it worked.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The process's memory and CPU over a stretch of work: [`Meter::start`] resets the peak RSS and
/// reads the RSS and the CPU time; [`Meter::cpu_us_per`] and [`Meter::rss_peak`] read them again
/// once the work is done.
#[derive(Clone, Copy, Debug)]
pub struct Meter {
    reset: bool,
    /// The RSS when the meter started, in MiB.
    pub rss_before: Option<f64>,
    cpu: Option<f64>,
}

impl Meter {
    /// Resets the peak RSS (`5` into `/proc/self/clear_refs`), then reads `VmRSS` and the CPU
    /// time.
    pub fn start() -> Self {
        let reset = reset_peak_rss();
        Meter {
            reset,
            rss_before: status_mib("VmRSS:"),
            cpu: cpu_seconds(),
        }
    }

    /// Microseconds of process CPU (user + system) per event since [`Meter::start`].
    pub fn cpu_us_per(&self, events: usize) -> Option<f64> {
        Some((cpu_seconds()? - self.cpu?) * 1e6 / events as f64)
    }

    /// The peak RSS since [`Meter::start`] (`VmHWM`), in MiB; `None` where the reset failed.
    pub fn rss_peak(&self) -> Option<f64> {
        if self.reset {
            status_mib("VmHWM:")
        } else {
            None
        }
    }
}

/// MiB for a table: rounded, or `n/a`.
pub fn mib(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |m| format!("{m:.0}"))
}
