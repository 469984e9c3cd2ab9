//! Compile errors of `#[Postgres::table]`: unmappable field types and helper mistakes are
//! reported at the user's tokens (`TRYBUILD=overwrite` refreshes the `.stderr` snapshots).

#[test]
fn compile_errors_point_at_the_field() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
