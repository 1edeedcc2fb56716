//! `meridian schema`: print the JSON Schema of plans and approvals.

pub fn run() -> i32 {
    print!("{}", meridian_core::schema::manifest_schema_text());
    0
}
