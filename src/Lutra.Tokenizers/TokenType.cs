namespace Lutra.Tokenizers;

/// <summary>Token types as stored in <c>tokenizer.ggml.token_type</c> (INT32 per token).</summary>
public enum TokenType
{
    Undefined = 0,
    Normal = 1,
    Unknown = 2,
    /// <summary>&lt;s&gt;, &lt;/s&gt;, chat markers: matched in text only when special parsing is on; printed only on request.</summary>
    Control = 3,
    /// <summary>Added tokens: matched verbatim in text even when special parsing is off; printed verbatim.</summary>
    UserDefined = 4,
    Unused = 5,
    /// <summary>SPM byte-fallback tokens &lt;0x00&gt;…&lt;0xFF&gt;.</summary>
    Byte = 6,
}

/// <summary>The tokenizer algorithm named by <c>tokenizer.ggml.model</c>.</summary>
public enum TokenizerKind
{
    /// <summary>"llama": SentencePiece, score-driven merges with byte fallback.</summary>
    Spm,
    /// <summary>"gpt2": byte-level BPE with a regex pre-tokenizer.</summary>
    Bpe,
    /// <summary>"bert": WordPiece, greedy longest prefix.</summary>
    Wpm,
}
