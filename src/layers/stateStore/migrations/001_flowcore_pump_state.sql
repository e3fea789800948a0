-- Checkpoints of @flowcore/data-pump: one row per pump id.
CREATE TABLE IF NOT EXISTS "flowcore_pump_state" (
  id VARCHAR(255) PRIMARY KEY,
  time_bucket VARCHAR(14) NOT NULL,
  event_id VARCHAR(255),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
