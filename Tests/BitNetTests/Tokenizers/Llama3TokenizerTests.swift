import XCTest
@testable import BitNetCore
@testable import BitNetTokenizers
@testable import BitNetFormats
@testable import BitNetInference
@testable import BitNetTraining
@testable import BitNetEvaluation
@testable import BitNetTools

/// LLaMA 3's tokenizer.json (pre-tokenizer regex, ignore_merges, added tokens, BOS post-processor) against the
/// Hugging Face `tokenizers` library's ids, on a vocabulary pruned by scripts/make_vocab_fixtures.py; and the chat
/// prompt formats.
final class Llama3TokenizerTests: XCTestCase {
    static let dir = TestPaths.fixtures.appendingPathComponent("formats/vocab")

    func load() throws -> (ByteLevelBPE, [Int], [[String: Any]]) {
        let tok = try ByteLevelBPE(contentsOf: Self.dir.appendingPathComponent("llama3-tokenizer.json"))
        let j = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.dir.appendingPathComponent("llama3-tokenizer.expected.json"))) as! [String: Any]
        return (tok, (j["original_ids"] as! [NSNumber]).map(\.intValue), j["cases"] as! [[String: Any]])
    }

    func testMatchesHuggingFaceTokenizers() throws {
        let (tok, original, cases) = try load()
        XCTAssertEqual(tok.preTokenizer, .llama3)
        XCTAssertTrue(tok.ignoreMerges)
        XCTAssertEqual(tok.bosID.map { original[$0] }, 128000)
        XCTAssertGreaterThan(cases.count, 45)
        for c in cases {
            let text = c["text"] as! String
            let expected = (c["ids"] as! [NSNumber]).map(\.intValue)
            var ids = tok.encode(text, parseSpecial: true)
            if c["add_special"] as? Bool == true {
                // This file's post-processor decides whether BOS is added; ours must agree with Hugging Face.
                XCTAssertEqual(tok.addsBOS, expected.first == 128000)
                if tok.addsBOS { ids.insert(tok.bosID!, at: 0) }
            }
            XCTAssertEqual(ids.map { original[$0] }, expected, text.debugDescription)
            if c["add_special"] == nil { XCTAssertEqual(tok.decode(tok.encode(text)), text) }
        }
    }

    /// Saving keeps the LLaMA 3 pre-tokenizer, ignore_merges and added tokens (a converted 2B4T checkpoint stores it).
    func testSavedTokenizerJSONKeepsLlama3Behaviour() throws {
        let (tok, _, cases) = try load()
        let back = try ByteLevelBPE(jsonData: try tok.jsonData())
        XCTAssertEqual(back.preTokenizer, .llama3)
        XCTAssertEqual(back.ignoreMerges, tok.ignoreMerges)
        XCTAssertEqual(back.addsBOS, tok.addsBOS)
        for c in cases {
            let text = c["text"] as! String
            XCTAssertEqual(back.encode(text, parseSpecial: true), tok.encode(text, parseSpecial: true), text.debugDescription)
        }
    }

    func testLlama3PreTokenizerSplits() {
        XCTAssertEqual(ByteLevelBPE.preTokenize("Hello world's 12345 x\n\n  y!!\n", kind: .llama3),
                       ["Hello", " world", "'s", " ", "123", "45", " x", "\n\n", " ", " y", "!!\n"])
        XCTAssertEqual(ByteLevelBPE.preTokenize("I'LL  go", kind: .llama3), ["I", "'LL", " ", " go"])
    }

    func testChatTemplatesRenderAsLlamaCpp() {
        let msgs = [ChatMessage(.system, "Be brief. "), ChatMessage(.user, "Hi"), ChatMessage(.assistant, "Hello!"), ChatMessage(.user, "2+2?")]
        // llama.cpp llm_chat_apply_template (LLM_CHAT_TEMPLATE_LLAMA_3): trimmed content in header blocks.
        XCTAssertEqual(ChatTemplate.llama3.render(msgs, bos: "<|begin_of_text|>"),
                       "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                       + "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
                       + "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
        XCTAssertEqual(ChatTemplate.bitnet.render(Array(msgs[1...]), bos: "<|begin_of_text|>"),
                       "<|begin_of_text|>User: Hi<|eot_id|>Assistant: Hello!<|eot_id|>User: 2+2?<|eot_id|>Assistant: ")
        XCTAssertEqual(ChatTemplate.detect("{{ '<|start_header_id|>' + message['role'] }}"), .llama3)
        XCTAssertEqual(ChatTemplate.detect("{{ 'Assistant: ' + message['content'] + '<|eot_id|>' }}"), .bitnet)
    }

    /// The rendered chat prompt tokenizes with the special tokens as single ids (checked against HF above).
    func testChatPromptTokensUseSpecialIDs() throws {
        let (tok, original, _) = try load()
        let ids = tok.encode(ChatTemplate.bitnet.render([ChatMessage(.user, "Hi there!")], bos: "<|begin_of_text|>"), parseSpecial: true)
        XCTAssertEqual(original[ids[0]], 128000)
        XCTAssertTrue(ids.map { original[$0] }.contains(128009))  // <|eot_id|>
    }
}

/// `Chat` end to end on a random model with the LLaMA 3 vocabulary: the prompt holds the special tokens, a reply
/// stops at the length limit or a stop token, and the history grows by one user and one assistant turn.
final class ChatTests: XCTestCase {
    func testChatTurnsAndStopTokens() throws {
        let tok = try ByteLevelBPE(contentsOf: Llama3TokenizerTests.dir.appendingPathComponent("llama3-tokenizer.json"))
        let c = ModelConfig(arch: .b158, vocabSize: tok.vocabSize, dim: 32, nLayers: 1, nHeads: 2, maxSeqLen: 128, ffn: .relu2)
        let model = InferenceModel(weights: ModelWeights(config: c, seed: 3))
        var chat = try Chat(model: model, tokenizer: tok, template: .bitnet, system: "Be brief.")
        let eot = try XCTUnwrap(tok.addedTokenID("<|eot_id|>"))
        XCTAssertTrue(chat.stopIDs.contains(eot))
        var o = GenerationOptions(); o.temperature = 0; o.maxTokens = 4
        var streamed = ""
        let reply = try chat.send("Hi there!", options: o) { streamed += $0 }
        XCTAssertEqual(reply, streamed)
        XCTAssertEqual(chat.messages.map(\.role), [.system, .user, .assistant])
        let prompt = chat.promptTokens()
        XCTAssertEqual(prompt.first, tok.bosID)
        XCTAssertEqual(prompt.filter { $0 == eot }.count, 3)  // system, user and the stored assistant reply, each closed
        XCTAssertLessThanOrEqual(tok.encode(reply).count, 4 + 1)
        // A conversation longer than the context is refused with a named error and leaves the history unchanged.
        XCTAssertThrowsError(try chat.send(String(repeating: "word ", count: 200), options: o) { _ in }) {
            XCTAssertTrue("\($0)".contains("context"), "\($0)")
        }
        XCTAssertEqual(chat.messages.count, 3)
    }
}
