namespace Lutra.Runtime.Chat;

/// <summary>One message of a conversation as a chat template sees it.</summary>
public sealed record ChatTurn(string Role, string Content);

/// <summary>Turns a conversation into the prompt text the model was trained on (its chat template).</summary>
public interface IChatPromptRenderer
{
    string Render(IReadOnlyList<ChatTurn> messages, bool addGenerationPrompt);
}
