import Foundation

/// A Hugging Face `config.json`: the keys `HFModel` reads and writes (BitNet and LLaMA).
///
/// Reading is lenient, as the checks in `HFModel.readConfig` expect: a string, flag or object of the wrong type reads as
/// absent (so its default applies), and a number is kept as written (`Number`) so that a wrong one can be quoted.
/// Writing leaves out the keys that are nil.
package struct HFConfig: Codable {
    package var architectures: [String]?
    package var modelType: String?
    package var vocabSize: Number?
    package var hiddenSize: Number?
    package var intermediateSize: Number?
    package var numHiddenLayers: Number?
    package var numAttentionHeads: Number?
    package var numKeyValueHeads: Number?
    package var maxPositionEmbeddings: Number?
    package var headDim: Number?
    package var hiddenAct: String?
    package var rmsNormEps: Number?
    package var ropeTheta: Number?
    /// RoPE settings: `rope_parameters` (transformers 5) or, in older files, `rope_scaling`.
    package var ropeParameters: RopeParameters?
    package var ropeScaling: RopeParameters?
    package var tieWordEmbeddings: Bool?
    package var torchDtype: String?
    package var attentionBias: Bool?
    package var quantizationConfig: QuantizationConfig?
    package var bosTokenID: Int?
    /// The end-of-sequence id; where the file lists several, the first.
    package var eosTokenID: Int?

    enum CodingKeys: String, CodingKey {
        case architectures, modelType = "model_type", vocabSize = "vocab_size", hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size", numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads", numKeyValueHeads = "num_key_value_heads"
        case maxPositionEmbeddings = "max_position_embeddings", headDim = "head_dim", hiddenAct = "hidden_act"
        case rmsNormEps = "rms_norm_eps", ropeTheta = "rope_theta", ropeParameters = "rope_parameters"
        case ropeScaling = "rope_scaling", tieWordEmbeddings = "tie_word_embeddings", torchDtype = "torch_dtype"
        case attentionBias = "attention_bias", quantizationConfig = "quantization_config"
        case bosTokenID = "bos_token_id", eosTokenID = "eos_token_id"
    }

    /// `rope_parameters` / `rope_scaling`.
    package struct RopeParameters: Codable {
        package var ropeType: String?
        /// The older name of `rope_type`.
        package var type: String?
        package var ropeTheta: Number?

        enum CodingKeys: String, CodingKey { case ropeType = "rope_type", type, ropeTheta = "rope_theta" }

        package init(ropeType: String? = nil, type: String? = nil, ropeTheta: Number? = nil) {
            self.ropeType = ropeType; self.type = type; self.ropeTheta = ropeTheta
        }

        package init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            ropeType = c.lenient(String.self, .ropeType)
            type = c.lenient(String.self, .type)
            ropeTheta = c.number(.ropeTheta)
        }
    }

    /// `quantization_config` of BitNet checkpoints.
    package struct QuantizationConfig: Codable {
        package var quantMethod: String?
        /// `bitlinear` (the output is divided by `weight_scale`) or `autobitlinear` (multiplied).
        package var linearClass: String?
        /// `offline` (stored ternary) or `online` (master weights quantized at load).
        package var quantizationMode: String?
        package var useRMSNorm: Bool?

        enum CodingKeys: String, CodingKey {
            case quantMethod = "quant_method", linearClass = "linear_class", quantizationMode = "quantization_mode"
            case useRMSNorm = "use_rms_norm"
        }

        package init(quantMethod: String? = nil, linearClass: String? = nil, quantizationMode: String? = nil, useRMSNorm: Bool? = nil) {
            self.quantMethod = quantMethod; self.linearClass = linearClass
            self.quantizationMode = quantizationMode; self.useRMSNorm = useRMSNorm
        }

        package init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            quantMethod = c.lenient(String.self, .quantMethod)
            linearClass = c.lenient(String.self, .linearClass)
            quantizationMode = c.lenient(String.self, .quantizationMode)
            useRMSNorm = c.flag(.useRMSNorm)
        }
    }

    /// A value where `config.json` should have a number, as the file wrote it. The text is kept, not only a value,
    /// because a check quotes a wrong entry as it stood (`-5`, `1.5`, `x`) and tells `null` (`<null>`) from an absent
    /// key; a flag reads as 1 or 0, as Foundation bridges it. Written back, `int` and `float` print as Swift prints them.
    package enum Number: Codable, Sendable, CustomStringConvertible {
        case int(Int)
        case float(Float)
        case double(Double)
        case null
        /// A string, list or object where a number belongs.
        case other(String)

        /// The value; nil when it is not a number.
        package var double: Double? {
            switch self {
            case .int(let i): Double(i)
            case .float(let f): Double(f)
            case .double(let d): d
            case .null, .other: nil
            }
        }

        package var description: String {
            switch self {
            case .int(let i): "\(i)"
            case .float(let f): "\(f)"
            case .double(let d): "\(d)"
            case .null: "<null>"
            case .other(let s): s
            }
        }

        package init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if c.decodeNil() {
                self = .null
            } else if let b = try? c.decode(Bool.self) {
                self = .int(b ? 1 : 0)
            } else if let i = try? c.decode(Int.self) {
                self = .int(i)
            } else if let d = try? c.decode(Double.self) {
                self = .double(d)
            } else if let s = try? c.decode(String.self) {
                self = .other(s)
            } else {
                self = .other((try? decoder.unkeyedContainer()) != nil ? "a list" : "an object")
            }
        }

        package func encode(to encoder: Encoder) throws {
            var c = encoder.singleValueContainer()
            switch self {
            case .int(let i): try c.encode(i)
            case .float(let f): try c.encode(f)
            case .double(let d): try c.encode(d)
            case .null: try c.encodeNil()
            case .other(let s): try c.encode(s)
            }
        }
    }

    package init() {}

    package init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        architectures = c.lenient([String].self, .architectures)
        modelType = c.lenient(String.self, .modelType)
        vocabSize = c.number(.vocabSize)
        hiddenSize = c.number(.hiddenSize)
        intermediateSize = c.number(.intermediateSize)
        numHiddenLayers = c.number(.numHiddenLayers)
        numAttentionHeads = c.number(.numAttentionHeads)
        numKeyValueHeads = c.number(.numKeyValueHeads)
        maxPositionEmbeddings = c.number(.maxPositionEmbeddings)
        headDim = c.number(.headDim)
        hiddenAct = c.lenient(String.self, .hiddenAct)
        rmsNormEps = c.number(.rmsNormEps)
        ropeTheta = c.number(.ropeTheta)
        ropeParameters = c.lenient(RopeParameters.self, .ropeParameters)
        ropeScaling = c.lenient(RopeParameters.self, .ropeScaling)
        tieWordEmbeddings = c.flag(.tieWordEmbeddings)
        torchDtype = c.lenient(String.self, .torchDtype)
        attentionBias = c.flag(.attentionBias)
        quantizationConfig = c.lenient(QuantizationConfig.self, .quantizationConfig)
        bosTokenID = c.number(.bosTokenID)?.tokenID
        // transformers writes a list when generation may stop at several tokens (LLaMA 3 Instruct); only a list of numbers.
        let eos = c.number(.eosTokenID)
        if eos?.double != nil {
            eosTokenID = eos?.tokenID
        } else if let ids = c.lenient([Number].self, .eosTokenID), ids.allSatisfy({ $0.double != nil }) {
            eosTokenID = ids.first?.tokenID
        }
    }
}

extension HFConfig.Number {
    /// The id a number names, truncated toward zero as `NSNumber.intValue` does; nil when it is not a number or out of range.
    fileprivate var tokenID: Int? { double.flatMap { Int(exactly: $0.rounded(.towardZero)) } }
}

extension KeyedDecodingContainer {
    /// The value at `key` when it has type `T`; nil when it is absent, null or of another type.
    fileprivate func lenient<T: Decodable>(_ type: T.Type, _ key: Key) -> T? {
        try? decodeIfPresent(type, forKey: key)
    }

    /// What stands at `key` where a number belongs (`null` and wrong types included); nil only when the key is absent.
    fileprivate func number(_ key: Key) -> HFConfig.Number? {
        contains(key) ? (try? decode(HFConfig.Number.self, forKey: key)) : nil
    }

    /// A flag as Foundation bridges JSON to `Bool`: `true`/`false`, or the numbers 1 and 0.
    fileprivate func flag(_ key: Key) -> Bool? {
        if let b = lenient(Bool.self, key) { return b }
        switch number(key)?.double {
        case 1?: return true
        case 0?: return false
        default: return nil
        }
    }
}
