-- The Rank It Pro app's own tables (restated from the app's production schema, for the demo and the tests).
-- The sync never creates or alters these in a real deployment; it only reads them and writes
-- companies.crm_sync_history and lastSyncedAt inside companies.crm_integrations.

CREATE TABLE IF NOT EXISTS companies (
  id                      serial PRIMARY KEY,
  name                    text NOT NULL,
  plan                    text NOT NULL DEFAULT 'starter',   -- starter | pro | agency
  usage_limit             integer NOT NULL DEFAULT 50,
  crm_integrations        text,      -- JSON object keyed by CRM type
  crm_sync_history        text,      -- JSON array, newest first, at most 100 entries
  business_type           text NOT NULL DEFAULT 'field_service',
  industry                text,
  email                   text,
  phone_number            text,
  website                 text,
  address                 text,
  city                    text,
  state                   text,
  zip_code                text,
  max_technicians         integer DEFAULT 10,
  is_active               boolean NOT NULL DEFAULT true,
  notes                   text,
  created_at              timestamp DEFAULT now()
);

CREATE TABLE IF NOT EXISTS company_locations (
  id           serial PRIMARY KEY,
  name         text NOT NULL,
  address      text NOT NULL,
  city         text NOT NULL,
  state        text NOT NULL,
  zip          text NOT NULL,
  phone        text,
  email        text,
  latitude     numeric,
  longitude    numeric,
  timezone     text DEFAULT 'UTC',
  is_active    boolean NOT NULL DEFAULT true,
  company_id   integer NOT NULL REFERENCES companies(id),
  created_at   timestamp DEFAULT now()
);

CREATE TABLE IF NOT EXISTS technicians (
  id           serial PRIMARY KEY,
  name         text NOT NULL,
  email        text NOT NULL,
  phone        text NOT NULL,
  specialty    text,
  location     text NOT NULL,
  location_id  integer REFERENCES company_locations(id),
  user_id      integer,
  company_id   integer NOT NULL REFERENCES companies(id),
  active       boolean NOT NULL DEFAULT true,
  created_at   timestamp DEFAULT now()
);

CREATE TABLE IF NOT EXISTS job_types (
  id           serial PRIMARY KEY,
  name         text NOT NULL,
  description  text,
  company_id   integer NOT NULL REFERENCES companies(id),
  is_active    boolean NOT NULL DEFAULT true,
  created_at   timestamp DEFAULT now()
);

CREATE TABLE IF NOT EXISTS check_ins (
  id                     serial PRIMARY KEY,
  job_type               text NOT NULL,
  notes                  text,
  customer_name          text,
  customer_email         text,
  customer_phone         text,
  work_performed         text,
  materials_used         text,
  latitude               numeric,
  longitude              numeric,
  location               text,
  address                text,
  city                   text,
  state                  text,
  zip                    text,
  address_verified       boolean DEFAULT false,
  location_source        text,              -- gps | manual | both
  photos                 jsonb DEFAULT '[]',  -- array of URLs or {url: ...} objects
  before_photos          jsonb DEFAULT '[]',
  after_photos           jsonb DEFAULT '[]',
  problem_description    text,
  solution_description   text,
  customer_feedback      text,
  follow_up_required     boolean DEFAULT false,
  follow_up_notes        text,
  is_blog                boolean DEFAULT false,
  generated_content      text,
  wordpress_sync_status  text,
  wordpress_post_id      integer,
  wordpress_post_url     text,
  technician_id          integer NOT NULL REFERENCES technicians(id),
  company_id             integer NOT NULL REFERENCES companies(id),
  location_id            integer REFERENCES company_locations(id),
  created_at             timestamp DEFAULT now()
);
