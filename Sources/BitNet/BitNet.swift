// The library a Swift user imports: `import BitNet` brings the public API of every layer.
@_exported import BitNetCore
@_exported import BitNetTokenizers
@_exported import BitNetFormats
@_exported import BitNetInference
@_exported import BitNetTraining
@_exported import BitNetEvaluation
