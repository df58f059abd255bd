//! Time-based one-time passwords (RFC 6238 over RFC 4226's HOTP): HMAC-SHA-1, 30-second
//! steps, 6 digits, the parameters every authenticator app uses by default. Also the
//! enrolment's `otpauth://` URI and QR code, and one-use recovery codes.
//!
//! Nothing here reads the clock or stores anything: callers pass `now` and keep the last
//! accepted step, so that a code is never accepted twice (see `basis_store::mfa`).

use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, Mac as _};
use rand::RngCore as _;
use sha1::Sha1;
use subtle::ConstantTimeEq as _;

/// Seconds per step.
pub const STEP_SECONDS: i64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;
/// Steps accepted either side of the current one, for clocks that drift (RFC 6238 §5.2).
pub const SKEW_STEPS: i64 = 1;
/// Bytes of a new secret (160 bits, the HMAC-SHA-1 block's natural key size).
pub const SECRET_BYTES: usize = 20;
/// How many recovery codes an enrolment gets.
pub const RECOVERY_CODES: usize = 10;

/// A new random secret, base32 without padding (32 characters).
pub fn new_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    BASE32_NOPAD.encode(&bytes)
}

/// The step that `now_ms` (Unix ms) falls in.
pub fn step_at(now_ms: i64) -> i64 {
    now_ms.div_euclid(1000).div_euclid(STEP_SECONDS)
}

/// The HOTP value of `key` at `counter`, as a number below 10^`DIGITS`.
pub fn hotp(key: &[u8], counter: u64) -> u32 {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    // Dynamic truncation (RFC 4226 §5.3): four bytes at the offset the last nibble names.
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let word = u32::from_be_bytes([
        digest[offset],
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]) & 0x7fff_ffff;
    word % 10u32.pow(DIGITS)
}

/// The code of `secret` (base32) at `step`, zero-padded; `None` if the secret is not base32.
pub fn code_at(secret: &str, step: i64) -> Option<String> {
    let key = BASE32_NOPAD.decode(secret.as_bytes()).ok()?;
    let counter = u64::try_from(step).ok()?;
    Some(format!(
        "{:0width$}",
        hotp(&key, counter),
        width = DIGITS as usize
    ))
}

/// Whether `code` looks like a TOTP code (6 digits, spaces allowed as apps show them).
pub fn looks_like_code(code: &str) -> bool {
    let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    digits.len() == DIGITS as usize && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The step whose code `code` is, within the skew window around `now_ms`, and later than
/// `last_step` (so a code already used, or an older one, is refused). Compares in constant
/// time.
pub fn verify(secret: &str, code: &str, now_ms: i64, last_step: i64) -> Option<i64> {
    let given: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if !looks_like_code(&given) {
        return None;
    }
    let current = step_at(now_ms);
    let mut found = None;
    // Every candidate is computed whatever matches, so timing says nothing about which.
    for step in (current - SKEW_STEPS)..=(current + SKEW_STEPS) {
        let expected = code_at(secret, step)?;
        let same = bool::from(expected.as_bytes().ct_eq(given.as_bytes()));
        if same && step > last_step && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// The `otpauth://` URI authenticator apps import (the Key Uri Format): `issuer` and
/// `account` are percent-encoded.
pub fn otpauth_uri(secret: &str, issuer: &str, account: &str) -> String {
    let encode = |text: &str| {
        url::form_urlencoded::byte_serialize(text.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    };
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("secret", secret)
        .append_pair("issuer", issuer)
        .append_pair("algorithm", "SHA1")
        .append_pair("digits", &DIGITS.to_string())
        .append_pair("period", &STEP_SECONDS.to_string())
        .finish()
        .replace('+', "%20");
    format!(
        "otpauth://totp/{}%3A{}?{query}",
        encode(issuer),
        encode(account)
    )
}

/// `data` as a QR code in SVG (medium error correction, a quiet zone, 4 px modules).
pub fn qr_svg(data: &str) -> crate::Result<String> {
    let code = qrcode::QrCode::with_error_correction_level(data.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| crate::Error::Internal(format!("QR code: {e}")))?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build())
}

/// A new recovery code: 80 random bits as four groups of four base32 letters and digits
/// (`abcd-efgh-ijkl-mnop`), easy to copy from paper.
pub fn new_recovery_code() -> String {
    let mut bytes = [0u8; 10];
    rand::rng().fill_bytes(&mut bytes);
    let text = BASE32_NOPAD.encode(&bytes).to_ascii_lowercase();
    text.as_bytes()
        .chunks(4)
        .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

/// A recovery code as typed, in its canonical form (lower case, no separators), or
/// `None` if it cannot be one.
pub fn normalise_recovery_code(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let valid = code.len() == 16
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b));
    valid.then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B's SHA-1 secret ("12345678901234567890").
    fn rfc_secret() -> String {
        BASE32_NOPAD.encode(b"12345678901234567890")
    }

    #[test]
    fn codes_match_the_rfc_6238_test_vectors() {
        // The RFC lists 8 digits; 6-digit codes are their last six.
        for (seconds, expected) in [
            (59_i64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            let code = code_at(&rfc_secret(), step_at(seconds * 1000)).unwrap();
            assert_eq!(code, expected[2..], "at {seconds}");
        }
    }

    #[test]
    fn hotp_matches_the_rfc_4226_test_vectors() {
        let expected = [
            755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489,
        ];
        for (counter, value) in expected.into_iter().enumerate() {
            assert_eq!(hotp(b"12345678901234567890", counter as u64), value);
        }
    }

    #[test]
    fn a_code_is_accepted_within_one_step_of_skew_and_only_after_the_last_step() {
        let secret = new_secret();
        let now = 1_700_000_000_000;
        let step = step_at(now);
        let code = code_at(&secret, step).unwrap();
        assert_eq!(verify(&secret, &code, now, -1), Some(step));
        assert_eq!(verify(&secret, &code, now, step), None, "replay");
        let previous = code_at(&secret, step - 1).unwrap();
        assert_eq!(verify(&secret, &previous, now, -1), Some(step - 1));
        let too_old = code_at(&secret, step - 2).unwrap();
        assert_eq!(verify(&secret, &too_old, now, -1), None);
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        assert_eq!(verify(&secret, &spaced, now, -1), Some(step));
        assert_eq!(verify(&secret, "12345", now, -1), None);
        assert_eq!(verify(&secret, "abcdef", now, -1), None);
    }

    #[test]
    fn the_uri_names_issuer_account_and_parameters_and_the_qr_code_is_svg() {
        let uri = otpauth_uri("JBSWY3DPEHPK3PXP", "Basis", "ann@example.com");
        assert!(
            uri.starts_with("otpauth://totp/Basis%3Aann%40example.com?"),
            "{uri}"
        );
        assert!(uri.contains("secret=JBSWY3DPEHPK3PXP"));
        assert!(uri.contains("issuer=Basis") && uri.contains("period=30"));
        let svg = qr_svg(&uri).unwrap();
        assert!(svg.contains("<svg") && svg.contains("</svg>"));
    }

    #[test]
    fn recovery_codes_are_random_and_normalise_from_what_people_type() {
        let code = new_recovery_code();
        assert_eq!(code.len(), 19);
        assert_ne!(code, new_recovery_code());
        let canonical = normalise_recovery_code(&code).unwrap();
        assert_eq!(
            normalise_recovery_code(&code.to_uppercase().replace('-', " ")),
            Some(canonical)
        );
        assert_eq!(normalise_recovery_code("123456"), None);
        assert_eq!(normalise_recovery_code("abcd-efgh-ijkl-mno1"), None);
    }

    #[test]
    fn secrets_are_base32_of_160_bits() {
        let secret = new_secret();
        assert_eq!(secret.len(), 32);
        assert_eq!(BASE32_NOPAD.decode(secret.as_bytes()).unwrap().len(), 20);
    }
}
