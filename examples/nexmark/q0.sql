-- Nexmark q0, pass-through: every bid, unchanged. Measures the cost of reading, decoding
-- and writing, the baseline of all the other queries.
--
-- Differs from Flink's nexmark q0 only in the source: Flink reads one 'datagen' table of
-- all events and a VIEW picks the bids; spillway's 'nexmark' connector delivers the bids of
-- the stream directly ('nexmark.table' = 'bid'). Column names must be spelled as here
-- (dateTime): the JSON decoder matches field names exactly.

CREATE TABLE bid (
  auction BIGINT,
  bidder BIGINT,
  price BIGINT,
  channel VARCHAR,
  url VARCHAR,
  dateTime TIMESTAMP(3),
  extra VARCHAR,
  WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND
) WITH (
  'connector' = 'nexmark',
  'nexmark.table' = 'bid',
  'events.num' = '10000000',
  'seed' = '0'
);

CREATE TABLE nexmark_q0 (
  auction BIGINT,
  bidder BIGINT,
  price BIGINT,
  dateTime TIMESTAMP(3),
  extra VARCHAR
) WITH ('connector' = 'blackhole');

INSERT INTO nexmark_q0
SELECT auction, bidder, price, dateTime, extra FROM bid;
