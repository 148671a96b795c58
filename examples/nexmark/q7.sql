-- Nexmark q7, highest bid: the bids with the highest price of every 10 second window.
--
-- Differs from the published Flink SQL in one condition: Flink's
--   WHERE B.dateTime BETWEEN B1.dateTime - INTERVAL '10' SECOND AND B1.dateTime
-- includes the window's end, so a bid at exactly window_end (which belongs to the next
-- window) is also compared with this window's maximum, and reported twice if it ties both.
-- spillway keeps each bid in its own window (the end is exclusive, as window_end is
-- everywhere else) and refuses BETWEEN here with a message saying so. Ties are kept: every
-- bid whose price equals its window's maximum is reported. spillway plans it as a
-- per-window top-1 with ties over the raw bids (one window aggregation; see
-- docs/ARCHITECTURE.md, "Per-window top-N"). q7_simplified.sql is only the inner MAX.

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

CREATE TABLE nexmark_q7 (
  auction BIGINT,
  price BIGINT,
  bidder BIGINT,
  dateTime TIMESTAMP(3),
  extra VARCHAR
) WITH ('connector' = 'blackhole');

INSERT INTO nexmark_q7
SELECT B.auction, B.price, B.bidder, B.dateTime, B.extra FROM bid B
JOIN (
  SELECT MAX(price) AS maxprice, window_end AS dateTime
  FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
  GROUP BY window_start, window_end
) B1 ON B.price = B1.maxprice
WHERE B.dateTime >= B1.dateTime - INTERVAL '10' SECOND AND B.dateTime < B1.dateTime;
