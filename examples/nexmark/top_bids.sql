-- Top 3 bids by price of every 10 second window, with their rank (not a published Nexmark
-- query: Flink's window top-N form, ROW_NUMBER() over a window TVF). Rows with equal prices
-- are ranked by their other columns, so the result does not depend on arrival order.

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

CREATE TABLE nexmark_top_bids (
  window_start TIMESTAMP(3),
  window_end TIMESTAMP(3),
  rownum BIGINT,
  auction BIGINT,
  bidder BIGINT,
  price BIGINT
) WITH ('connector' = 'blackhole');

INSERT INTO nexmark_top_bids
SELECT window_start, window_end, rownum, auction, bidder, price FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY price DESC) AS rownum
  FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
) WHERE rownum <= 3;
