//! Column headers as field and attribute names.
//!
//! Files exported from CRMs and spreadsheets name their columns for people: `First Name`,
//! `InternetService`, `Customer ID`, `Größe`. [`normalize`] turns such a header into the
//! snake_case name Clarion uses (`first_name`, `internet_service`, `customer_id`, `grosse`):
//! accents are folded to ASCII, words split at case changes and separators, and everything is
//! lower-cased and joined with `_`. The result either names a built-in field, or is checked
//! as an attribute name by [`clarion_model::AttributeName::parse`], which says why it cannot be
//! one (it starts with a digit, say); nothing is dropped silently.

use unicode_normalization::UnicodeNormalization;

/// The snake_case name for `header`. Only a-z, 0-9 and `_` remain; it may still be empty or
/// start with a digit, which the caller reports.
pub fn normalize(header: &str) -> String {
    let folded = fold_to_ascii(header.trim());
    let chars: Vec<char> = folded.chars().collect();
    let mut name = String::with_capacity(chars.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_alphanumeric() {
            if c.is_ascii_uppercase() && i > 0 && starts_word(&chars, i) {
                push_separator(&mut name);
            }
            name.push(c.to_ascii_lowercase());
        } else {
            push_separator(&mut name);
        }
    }
    name.trim_end_matches('_').to_owned()
}

/// Whether the capital at `i` begins a new word: after a lower-case letter or digit
/// (`internetService`, `Top10Products`), or as the last capital of an acronym followed by
/// lower case (`HTTPServer` -> `http_server`).
fn starts_word(chars: &[char], i: usize) -> bool {
    let before = chars[i - 1];
    let after = chars.get(i + 1).copied();
    before.is_ascii_lowercase()
        || before.is_ascii_digit()
        || (before.is_ascii_uppercase() && after.is_some_and(|a| a.is_ascii_lowercase()))
}

/// One `_` between words: none at the start and never two in a row.
fn push_separator(name: &mut String) {
    if !name.is_empty() && !name.ends_with('_') {
        name.push('_');
    }
}

/// Latin letters with accents become their base letters (NFKD, then the combining marks go);
/// the few letters that do not decompose are spelled out. Other scripts are left as they are,
/// and fall out as separators.
fn fold_to_ascii(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.nfkd() {
        match c {
            'ß' => out.push_str("ss"),
            'æ' => out.push_str("ae"),
            'Æ' => out.push_str("AE"),
            'œ' => out.push_str("oe"),
            'Œ' => out.push_str("OE"),
            'ø' => out.push('o'),
            'Ø' => out.push('O'),
            'đ' | 'ð' => out.push('d'),
            'Đ' | 'Ð' => out.push('D'),
            'ł' => out.push('l'),
            'Ł' => out.push('L'),
            'þ' => out.push_str("th"),
            'Þ' => out.push_str("TH"),
            c if unicode_normalization::char::is_combining_mark(c) => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn headers_from_crm_and_spreadsheet_exports_become_snake_case() {
        // The 21 columns of the IBM Telco customer churn export, as CRMs write them.
        let telco = [
            ("customerID", "customer_id"),
            ("gender", "gender"),
            ("SeniorCitizen", "senior_citizen"),
            ("Partner", "partner"),
            ("Dependents", "dependents"),
            ("tenure", "tenure"),
            ("PhoneService", "phone_service"),
            ("MultipleLines", "multiple_lines"),
            ("InternetService", "internet_service"),
            ("OnlineSecurity", "online_security"),
            ("OnlineBackup", "online_backup"),
            ("DeviceProtection", "device_protection"),
            ("TechSupport", "tech_support"),
            ("StreamingTV", "streaming_tv"),
            ("StreamingMovies", "streaming_movies"),
            ("Contract", "contract"),
            ("PaperlessBilling", "paperless_billing"),
            ("PaymentMethod", "payment_method"),
            ("MonthlyCharges", "monthly_charges"),
            ("TotalCharges", "total_charges"),
            ("Churn", "churn"),
        ];
        for (header, name) in telco {
            assert_eq!(normalize(header), name, "{header}");
        }
    }

    #[test]
    fn spaces_punctuation_accents_and_acronyms_are_handled() {
        let cases = [
            ("First Name", "first_name"),
            ("Customer ID", "customer_id"),
            ("CustomerID", "customer_id"),
            ("E-Mail", "e_mail"),
            ("  Zip Code ", "zip_code"),
            ("Annual Income (k$)", "annual_income_k"),
            ("Spending Score (1-100)", "spending_score_1_100"),
            ("Größe", "grosse"),
            ("Straße & Nr.", "strasse_nr"),
            ("Ville de résidence", "ville_de_residence"),
            ("Año", "ano"),
            ("Łódź", "lodz"),
            ("HTTPServer", "http_server"),
            ("Top10Products", "top10_products"),
            ("last_purchase_date", "last_purchase_date"),
            ("__weird__", "weird"),
        ];
        for (header, name) in cases {
            assert_eq!(normalize(header), name, "{header}");
        }
    }

    #[test]
    fn headers_that_cannot_be_names_stay_visibly_bad() {
        assert_eq!(normalize(""), "");
        assert_eq!(normalize("日本語"), "");
        assert_eq!(normalize("2023 Revenue"), "2023_revenue");
    }
}
