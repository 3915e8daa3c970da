-- crm_import: check-ins imported from CSV files (e.g. a company's previous system).

-- One row per import run: what was read, inserted and rejected (no row data).
CREATE TABLE IF NOT EXISTS crm_sync.check_in_imports (
    id                  bigserial   PRIMARY KEY,
    run_id              text,
    company_id          integer     NOT NULL,
    file_name           text        NOT NULL,
    file_sha256         text        NOT NULL,
    dry_run             boolean     NOT NULL DEFAULT false,
    status              text        NOT NULL CHECK (status IN ('running', 'imported', 'dry_run', 'failed')),
    rows_read           integer     NOT NULL DEFAULT 0,
    inserted            integer     NOT NULL DEFAULT 0,
    rejected            integer     NOT NULL DEFAULT 0,   -- invalid rows
    duplicates_in_file  integer     NOT NULL DEFAULT 0,
    already_imported    integer     NOT NULL DEFAULT 0,
    rejects_file        text,
    report_file         text,
    error               text,                             -- why the import failed as a whole
    started_at          timestamptz NOT NULL DEFAULT now(),
    finished_at         timestamptz
);
CREATE INDEX IF NOT EXISTS check_in_imports_company_idx ON crm_sync.check_in_imports (company_id, started_at);

-- One row per imported check-in: its source key makes a re-import of the same rows insert nothing.
-- source_key is 'ext:<external_id>', or 'row:<sha256 of the row's values>' when the file has no external_id.
CREATE TABLE IF NOT EXISTS crm_sync.check_in_import_rows (
    company_id   integer     NOT NULL,
    source_key   text        NOT NULL,
    check_in_id  integer     NOT NULL,
    import_id    bigint      NOT NULL REFERENCES crm_sync.check_in_imports (id),
    line         integer     NOT NULL,
    PRIMARY KEY (company_id, source_key)
);
CREATE INDEX IF NOT EXISTS check_in_import_rows_check_in_idx ON crm_sync.check_in_import_rows (check_in_id);
