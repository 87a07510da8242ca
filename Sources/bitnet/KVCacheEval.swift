import BitNet
import Foundation

/// The KV-cache evaluation of `bitnet reproduce` (Table 6); plugged in once the inference session has cache formats.
func kvCacheEvaluation(context: Int) -> ((ModelWeights, any Tokenizer, [Int32], [ZeroShotTask: [ZeroShotItem]]) throws -> [ModelEvaluation])? {
    nil
}
