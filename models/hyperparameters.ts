/**
 * Hyperparameter schemas of the built-in model types, mirroring what each training script
 * accepts (models/train*.py). Strict: an unknown key is refused, never silently ignored.
 */
import { z } from "zod";

/** xgboost holds rates as float32 and refuses values that round to 0 there (1e-38 does). */
const MIN_RATE = 1e-6;
const positiveUnit = z.number().min(MIN_RATE).max(1);
/**
 * Weights and penalties: xgboost refuses values past float32 (about 3.4e38) and an MLP's loss
 * overflows with huge alpha; 1e6 is far beyond any useful setting and safe for both.
 */
const MAX_PENALTY = 1e6;
const penalty = z.number().min(0).max(MAX_PENALTY);

const common = {
  random_state: z.number().int().min(0).max(4294967295).default(42),
  cv_folds: z.number().int().min(2).max(20).default(5),
  test_size: z.number().min(0.05).max(0.5).default(0.2),
};

/** scikit-learn also takes a count of features; here only a fraction is (the CSV's width varies). */
const MAX_FEATURES = 'must be "sqrt", "log2", null (all features) or a fraction of the features ' +
  "in (0, 1]: 0.5 uses half of them";
const featureFraction = z.number().min(MIN_RATE, { error: MAX_FEATURES })
  .max(1, { error: MAX_FEATURES });

const nJobs = z.number().int().min(1).max(64).default(1);

export const XGBoostParams = z.strictObject({
  ...common,
  n_estimators: z.number().int().min(1).max(5000).default(100),
  learning_rate: positiveUnit.default(0.1),
  max_depth: z.number().int().min(1).max(20).default(6),
  subsample: positiveUnit.default(1),
  colsample_bytree: positiveUnit.default(1),
  min_child_weight: penalty.default(1),
  reg_lambda: penalty.default(1),
  reg_alpha: penalty.default(0),
  n_jobs: nJobs,
});

export const RandomForestParams = z.strictObject({
  ...common,
  n_estimators: z.number().int().min(1).max(5000).default(100),
  max_depth: z.number().int().min(1).max(100).nullable().default(null),
  min_samples_split: z.number().int().min(2).max(1000).default(2),
  min_samples_leaf: z.number().int().min(1).max(1000).default(1),
  max_features: z.union([z.enum(["sqrt", "log2"]), featureFraction], { error: MAX_FEATURES })
    .nullable().default("sqrt"),
  trees_per_step: z.number().int().min(1).max(1000).default(10),
  n_jobs: nJobs,
});

export const NeuralNetParams = z.strictObject({
  ...common,
  hidden_layer_sizes: z.array(z.number().int().min(1).max(4096)).min(1).max(10).default([
    64,
    32,
  ]),
  learning_rate: positiveUnit.default(0.001),
  epochs: z.number().int().min(1).max(10000).default(50),
  batch_size: z.number().int().min(1).max(100000).default(32),
  alpha: penalty.default(0.0001),
  activation: z.enum(["relu", "tanh", "logistic", "identity"]).default("relu"),
});

/** Any JSON object: custom model types validate their own hyperparameters. */
export const AnyParams = z.record(z.string(), z.unknown());

export type ParamsSchema = z.ZodType<Record<string, unknown>>;

/** The keys a strict schema knows, for error messages; null when any key is accepted. */
export function knownKeys(schema: ParamsSchema): string[] | null {
  return schema instanceof z.ZodObject ? Object.keys(schema.shape) : null;
}
