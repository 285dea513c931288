//! `redis_url = "redis+sentinel://…"`: the Redis master found through Redis Sentinel,
//! so the pin store follows a failover by itself.
//!
//! `redis+sentinel://[:PASSWORD@]HOST[:PORT][,HOST[:PORT]…]/MASTER-NAME[/DB]`: the
//! sentinels (port 26379 unless given), the name they monitor the master under, and
//! the database. The password, like `redis_password_file`, is the master's; the
//! sentinels are asked without one.

/// The scheme of a URL that names sentinels.
pub const SCHEME: &str = "redis+sentinel://";

/// The port sentinels listen on unless the URL says otherwise.
const DEFAULT_PORT: u16 = 26379;

/// Where the sentinels are and what to ask them for.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelUrl {
    /// Each sentinel's host and port.
    pub sentinels: Vec<(String, u16)>,
    /// The name the sentinels monitor the master under (`sentinel monitor NAME …`).
    pub master: String,
    /// The database number on the master.
    pub db: i64,
    /// The master's password, when the URL carries one.
    pub password: Option<String>,
}

impl std::fmt::Debug for SentinelUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelUrl")
            .field("sentinels", &self.sentinels)
            .field("master", &self.master)
            .field("db", &self.db)
            .field("password", &self.password.as_ref().map(|_| "…"))
            .finish()
    }
}

/// Reads a `redis+sentinel://` URL; the error says what is wrong with it.
pub fn parse(url: &str) -> Result<SentinelUrl, String> {
    let rest = url
        .strip_prefix(SCHEME)
        .ok_or_else(|| format!("does not start with {SCHEME}"))?;
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((userinfo, rest)) => (Some(userinfo), rest),
        None => (None, rest),
    };
    let password = userinfo
        .map(|u| u.split_once(':').map_or(u, |(_, pw)| pw))
        .filter(|pw| !pw.is_empty())
        .map(|pw| {
            percent_encoding::percent_decode_str(pw)
                .decode_utf8_lossy()
                .into_owned()
        });
    let mut parts = rest.split('/');
    let hosts = parts.next().unwrap_or_default();
    let master = parts.next().unwrap_or_default();
    if master.is_empty() {
        return Err("names no master: write …/MASTER-NAME after the sentinels".to_owned());
    }
    let db = match parts.next() {
        None | Some("") => 0,
        Some(db) => db
            .parse()
            .map_err(|_| format!("database {db:?} is not a number"))?,
    };
    if parts.next().is_some() {
        return Err("has more than /MASTER-NAME/DB after the sentinels".to_owned());
    }
    let sentinels = hosts
        .split(',')
        .map(sentinel)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SentinelUrl {
        sentinels,
        master: master.to_owned(),
        db,
        password,
    })
}

/// `HOST`, `HOST:PORT`, `[IPV6]` or `[IPV6]:PORT`.
fn sentinel(host: &str) -> Result<(String, u16), String> {
    let (name, port) = match host.strip_prefix('[') {
        Some(inner) => {
            let (name, after) = inner
                .split_once(']')
                .ok_or_else(|| format!("sentinel {host:?} lacks its closing bracket"))?;
            (name, after.strip_prefix(':'))
        }
        None => match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        },
    };
    if name.is_empty() {
        return Err("names an empty sentinel".to_owned());
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(port) => port
            .parse()
            .map_err(|_| format!("sentinel {host:?} has no valid port"))?,
    };
    Ok((name.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinels_master_db_and_password_are_read() {
        let url = parse("redis+sentinel://:s%40cret@10.0.0.5,10.0.0.6:26380/bits/2").unwrap();
        assert_eq!(
            url.sentinels,
            [
                ("10.0.0.5".to_owned(), 26379),
                ("10.0.0.6".to_owned(), 26380)
            ]
        );
        assert_eq!((url.master.as_str(), url.db), ("bits", 2));
        assert_eq!(url.password.as_deref(), Some("s@cret"));
        assert!(!format!("{url:?}").contains("cret"));
        let plain = parse("redis+sentinel://sentinel.example,[::1]:26390/mymaster").unwrap();
        assert_eq!((plain.db, plain.password), (0, None));
        assert_eq!(plain.sentinels[1], ("::1".to_owned(), 26390));
    }

    #[test]
    fn a_url_without_master_or_with_a_bad_port_or_db_is_refused() {
        for url in [
            "redis+sentinel://10.0.0.5:26379",
            "redis+sentinel://10.0.0.5:26379/",
            "redis+sentinel://10.0.0.5:x/m",
            "redis+sentinel://10.0.0.5,,10.0.0.6/m",
            "redis+sentinel://10.0.0.5/m/zero",
            "redis+sentinel://10.0.0.5/m/0/extra",
            "redis://10.0.0.5/m",
        ] {
            assert!(parse(url).is_err(), "{url}");
        }
    }
}
