/** Bad values the bad-request generators draw from. */

export const TRAVERSAL = [
  "../../etc/passwd",
  "..%2F..%2Fetc%2Fpasswd",
  "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
  "..%252f..%252fetc%252fpasswd",
  "....%2F%2F....%2F%2Fetc",
  "..%5C..%5Cwindows%5Cwin.ini",
  "%2Fetc%2Fpasswd",
  "%C0%AE%C0%AE%2F%C0%AE%C0%AE%2Fetc",
  "%00",
  "xgboost%00.joblib",
  "%E2%80%AEgnp.exe",
  "%F0%9F%92%A9",
  "%ED%A0%80",
  "%FF%FE%FD",
  "a".repeat(5000),
  "XGBOOST",
  "~root",
  "$(id)",
  "%3Bls%20-la",
  "models%2F..%2F..%2Fsecret",
];

export const PARAM_ROUTES: [string, (p: string) => string][] = [
  ["POST", (p) => `/train/${p}`],
  ["GET", (p) => `/train/status/${p}`],
  ["GET", (p) => `/train/logs/${p}`],
  ["GET", (p) => `/train/job/${p}/events`],
  ["DELETE", (p) => `/train/job/${p}`],
  ["DELETE", (p) => `/train/job/cancel/${p}`],
];

export const WRONG_VALUES: Record<string, unknown[]> = {
  retrain: ["true", 1, 0, [], {}, null],
  use_cv: ["no", 1, [], { a: 1 }, null],
  hyperparameters: [[], "x", 5, true, [1, 2]],
  timeout_seconds: ["10", true, [], {}, -1, 0, 1.5, 1e20, 604801, 9007199254740993, -0.0],
  unknown_field: [1, "x", null],
};

export const BAD_HYPER: [string, Record<string, unknown>][] = [
  ["xgboost", { n_estimators: -1 }],
  ["xgboost", { n_estimators: 1e20 }],
  ["xgboost", { max_depth: 0 }],
  ["xgboost", { learning_rate: -0.5 }],
  ["xgboost", { learning_rate: "fast" }],
  ["xgboost", { "\u0000": 1 }],
  ["random-forest", { max_features: "all" }],
  ["random-forest", { min_samples_split: 1 }],
  ["random-forest", { n_jobs: 65 }],
  ["neural-net", { hidden_layer_sizes: [-1] }],
  ["neural-net", { hidden_layer_sizes: [] }],
  ["neural-net", { hidden_layer_sizes: "64,32" }],
  ["neural-net", { epochs: 1e9 }],
  ["neural-net", { activation: "\u202erelu" }],
  ["neural-net", { "epochs\u200b": 5 }],
];

export const ODD_TYPES = [
  "\u0000",
  "\ud800",
  "x\u202egnp",
  "\u{1F4A9}",
  "ｘｇｂｏｏｓｔ",
  "xgboost\u200b",
  "e" + "\u0301".repeat(3000),
  "",
  " xgboost",
  "../models/xgboost",
];
