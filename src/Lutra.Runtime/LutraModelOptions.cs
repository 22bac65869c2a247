using Lutra.Models;
using Lutra.Runtime.Chat;
using Lutra.Runtime.Tokenization;

namespace Lutra.Runtime;

/// <summary>Load-time choices; every property is optional.</summary>
public sealed record LutraModelOptions
{
    /// <summary>Use this tokenizer instead of the one described by the GGUF metadata.</summary>
    public ITextTokenizer? Tokenizer { get; init; }

    /// <summary>Use this renderer instead of the model's own chat template.</summary>
    public IChatPromptRenderer? ChatRenderer { get; init; }

    /// <summary>How the weights' kernels are chosen at load (tuned by default); shared by every context.</summary>
    public KernelOptions? Kernels { get; init; }
}
