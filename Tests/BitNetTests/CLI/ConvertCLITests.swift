import XCTest
@testable import BitNetCore
@testable import BitNetTokenizers
@testable import BitNetFormats
@testable import BitNetInference
@testable import BitNetTraining
@testable import BitNetEvaluation
@testable import BitNetTools

/// `bitnet convert` end to end: Hugging Face → GGUF → bitnet checkpoint keeps the logits; bad files give named errors.
extension CLITests {
    func testConvertBetweenFormatsKeepsLogits() throws {
        let dir = TestPaths.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let hf = TestPaths.fixtures.appendingPathComponent("formats/hf-packed").path
        let gguf = dir.appendingPathComponent("m.gguf").path, own = dir.appendingPathComponent("own").path
        let back = dir.appendingPathComponent("back-hf").path
        XCTAssertEqual(try run(["convert", "--from", hf, "--to", "gguf", "--type", "i2_s", "--out", gguf]).status, 0)
        XCTAssertEqual(try run(["convert", "--from", gguf, "--to", "bitnet", "--out", own]).status, 0)
        XCTAssertEqual(try run(["convert", "--from", own, "--to", "hf", "--hf-dtype", "f32", "--out", back]).status, 0)
        let tokens = "3,17,200,5"
        var logits: [[Float]] = []
        for m in [hf, gguf, own, back] {
            let out = dir.appendingPathComponent("l.bin").path
            XCTAssertEqual(try run(["logits", "--model", m, "--tokens", tokens, "--out", out]).status, 0, m)
            logits.append(try Data(contentsOf: URL(fileURLWithPath: out)).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) })
        }
        for l in logits.dropFirst() { XCTAssertLessThan(maxAbsDiff(l, logits[0]), 1e-4) }
        // A truncated GGUF names the file and the problem.
        let cut = dir.appendingPathComponent("cut.gguf")
        try Data(try Data(contentsOf: URL(fileURLWithPath: gguf)).prefix(1000)).write(to: cut)
        try expectFailure(["convert", "--from", cut.path, "--to", "bitnet", "--out", own], mentions: "cut.gguf")
        try expectFailure(["convert", "--from", hf, "--to", "gguf", "--type", "q5_9", "--out", gguf], mentions: "--type")
    }
}

extension CLITests {
    /// `bitnet chat --message` answers one turn from a Hugging Face directory with a LLaMA 3 tokenizer.json.
    func testChatAnswersOneMessage() throws {
        let dir = TestPaths.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let tok = try ByteLevelBPE(contentsOf: TestPaths.fixtures.appendingPathComponent("formats/vocab/llama3-tokenizer.json"))
        let c = ModelConfig(arch: .b158, vocabSize: tok.vocabSize, dim: 32, nLayers: 1, nHeads: 2, maxSeqLen: 64, ffn: .relu2)
        let model = dir.appendingPathComponent("chat-hf")
        try HFModel.save(ModelWeights(config: c, seed: 5), tokenizer: tok, to: model)
        let r = try run(["chat", "--model", model.path, "--message", "Hi there!", "--max-tokens", "3", "--temperature", "0"])
        XCTAssertEqual(r.status, 0, r.stderr)
        // A chat template travels through convert: HF tokenizer_config.json → GGUF tokenizer.chat_template.
        let jinja = "{% for m in messages %}{{ '<|start_header_id|>' + m['role'] }}{% endfor %}"
        let tcURL = model.appendingPathComponent("tokenizer_config.json")
        var tc = try JSONSerialization.jsonObject(with: Data(contentsOf: tcURL)) as! [String: Any]
        tc["chat_template"] = jinja
        try JSONSerialization.data(withJSONObject: tc).write(to: tcURL)
        let gguf = dir.appendingPathComponent("chat.gguf").path
        XCTAssertEqual(try run(["convert", "--from", model.path, "--to", "gguf", "--type", "f32", "--out", gguf]).status, 0)
        XCTAssertEqual(try ModelFile.chatTemplate(path: gguf), jinja)
        XCTAssertEqual(try run(["chat", "--model", gguf, "--message", "Hi", "--max-tokens", "2", "--temperature", "0"]).status, 0)
        try expectFailure(["chat", "--model", model.path, "--template", "vicuna", "--message", "x"], mentions: "--template")
    }
}
